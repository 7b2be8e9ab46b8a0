"""Rule metadata keywords: msg, sid, rev, gid, classtype, priority, reference, metadata,
target, tag (accepted, no effect: Hyperwall does not log tagged packets), noalert."""
from __future__ import annotations

import re

from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword, unquote
from netsec.rules.rule import Builder

_URL = DOCS + "meta.html"
_MSG_ESCAPE = re.compile(r"\\(.)")


def _int(value: str, keyword: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    v = value.strip()
    if not v.isdigit() or not lo <= int(v) <= hi:
        raise RuleError(f"{keyword}: want an integer in {lo}..{hi}, got {value!r}")
    return int(v)


def setup_msg(b: Builder, value: str | None) -> None:
    b.rule.msg = _MSG_ESCAPE.sub(r"\1", unquote(value or "", "msg"))


def setup_sid(b: Builder, value: str | None) -> None:
    b.rule.sid = _int(value or "", "sid", 1)


def setup_rev(b: Builder, value: str | None) -> None:
    b.rule.rev = _int(value or "", "rev")


def setup_gid(b: Builder, value: str | None) -> None:
    b.rule.gid = _int(value or "", "gid")


def setup_classtype(b: Builder, value: str | None) -> None:
    name = (value or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise RuleError(f"classtype: bad name {value!r}")
    b.rule.classtype = name.lower()


def setup_priority(b: Builder, value: str | None) -> None:
    b.seen.add("priority")
    b.rule.priority = _int(value or "", "priority", 1, 255)


def setup_reference(b: Builder, value: str | None) -> None:
    kind, sep, ref = (value or "").partition(",")
    if not sep or not kind.strip() or not ref.strip():
        raise RuleError(f"reference: want type,reference, got {value!r}")
    b.rule.references.append(f"{kind.strip()},{ref.strip()}")


def setup_metadata(b: Builder, value: str | None) -> None:
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, _, val = part.partition(" ")
        b.rule.metadata.setdefault(key, []).append(val.strip())


def setup_target(b: Builder, value: str | None) -> None:
    v = (value or "").strip()
    if v not in ("src_ip", "dest_ip"):
        raise RuleError(f"target: want src_ip or dest_ip, got {value!r}")
    b.rule.target = v


def setup_tag(b: Builder, value: str | None) -> None:
    if not re.fullmatch(r"\s*(session|host)\s*(,.*)?", value or ""):
        raise RuleError(f"tag: want session|host[,count,metric], got {value!r}")


def setup_noalert(b: Builder, value: str | None) -> None:
    b.rule.noalert = True


KEYWORDS = (
    Keyword("msg", setup_msg, "the alert's message", _URL + "#msg-message"),
    Keyword("sid", setup_sid, "the signature id", _URL + "#sid-signature-id"),
    Keyword("rev", setup_rev, "the signature's revision", _URL + "#rev-revision"),
    Keyword("gid", setup_gid, "the group id", _URL + "#gid-group-id"),
    Keyword("classtype", setup_classtype, "classification (priority from classification.config)",
            _URL + "#classtype"),
    Keyword("priority", setup_priority, "alert priority, overriding the classtype's",
            _URL + "#priority"),
    Keyword("reference", setup_reference, "a reference (type,value)", _URL + "#reference"),
    Keyword("metadata", setup_metadata, "key value pairs", _URL + "#metadata"),
    Keyword("target", setup_target, "which side is the target", _URL + "#target"),
    Keyword("tag", setup_tag, "accepted; Hyperwall does not log tagged packets",
            DOCS + "tag.html"),
    Keyword("noalert", setup_noalert, "match without alerting", DOCS + "flow-keywords.html",
            value=False),
)
