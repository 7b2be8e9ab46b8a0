"""netsec.bundle.verify against archives no builder writes: every byte is bounded before it
is held, every member type but a plain file is refused by name, JSON is measured before it
is parsed, versions and dates are held to the wire and the clock, and whatever the input,
verify raises BundleError (with a reason) or returns a bundle, nothing else."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

import netsec.bundle
from builder.bundle import assemble
from netsec.bundle import CLOCK_SKEW, MAX_VERSION, BundleError, NotNow, verify
from tests.bundle_helpers import (
    KEY,
    NOW,
    RULE,
    deep_json,
    end,
    gnu_sparse,
    header,
    member,
    pax,
    signed_members,
    sparse_bomb,
    trusted,
)


def refused(data: bytes, reason: str, now: dt.datetime = NOW) -> BundleError:
    with pytest.raises(BundleError, match=reason) as e:
        verify(data, trusted(), now=now, min_version=0)
    return e.value


def manifest(**change: object) -> bytes:
    m = {"format": 1, "provider": "acme", "version": 2, "created": NOW.isoformat(),
         "expires": (NOW + dt.timedelta(days=1)).isoformat(), "files": {}}
    return json.dumps({**m, **change}).encode()


def test_the_sparse_bomb_is_refused_by_its_header() -> None:
    """16 members that read as 32 MiB each, 17 KB on the wire (tarfile read them in full)."""
    bomb = sparse_bomb(16, 32 << 20)
    assert len(bomb) < 20_000
    refused(bomb, r"'rules/r0.rules': not a plain file \(a GNU sparse file\)")


@pytest.mark.parametrize(("data", "reason"), [
    (member("rules/l.rules", kind=b"1", linkname=b"manifest.json") + end(), "a hard link"),
    (member("rules/l.rules", kind=b"2", linkname=b"/etc/shadow") + end(), "a symbolic link"),
    (member("rules/c.rules", kind=b"3") + end(), "a character device"),
    (member("rules/b.rules", kind=b"4") + end(), "a block device"),
    (member("rules/", kind=b"5") + end(), "a folder"),
    (member("rules/f.rules", kind=b"6") + end(), "a fifo"),
    (pax({"path": "rules/x.rules"}) + member("rules/x.rules", b"x") + end(),
     r"a pax extended header"),
    (pax({"comment": "x"}, kind=b"g") + end(), "a pax global header"),
    # the bare ValueError of tarfile's GNU.sparse.map parsing, once
    (pax({"GNU.sparse.map": "zero,one", "GNU.sparse.size": "ten"}) + end(),
     "a pax extended header"),
    (member("././@LongLink", b"rules/" + b"a" * 200 + b".rules\0", kind=b"L") + end(),
     "a GNU long name"),
    (gnu_sparse("rules/s.rules", 1 << 40) + end(), "a GNU sparse file"),
    (member("rules/z.rules", kind=b"Z") + end(), r"an unknown member type b'Z'"),
])
def test_every_member_but_a_plain_file_is_refused_by_name(data: bytes, reason: str) -> None:
    refused(data, f"not a plain file \\({reason}\\)")


@pytest.mark.parametrize(("data", "reason"), [
    (header("rules/a.rules", at={124: b"\x80" + b"\xff" * 11}) + end(), "in base-256"),
    (header("rules/a.rules", at={124: b"9" * 11 + b"\0"}) + end(), "is not an octal number"),
    (header("rules/a.rules", size=1 << 30) + end(), "rules/a.rules: 1073741824 bytes, over"),
    (header("rules/a.rules", size=5000) + b"x" * 600, r"holds 600 of its 5000 bytes"),
    (member("rules/a.rules", b"x") + end() + b"\0" * 100 + b"tail", "data after the end"),
    (member("rules/a.rules", b"x", magic=b"nottar\0\0") + end(), "is not a ustar header"),
    (member(b"rules/\xff.rules") + end(), "a member name that is not UTF-8"),
    (member("rules/" + "a" * 93 + ".rules") + end(), "not a rules file"),
    (member("manifest.json", b"{}") * 2 + end(), "manifest.json: in the bundle twice"),
])
def test_headers_are_checked_before_their_member_is_read(data: bytes, reason: str) -> None:
    refused(data, reason)


def test_a_header_with_a_bad_checksum_is_refused() -> None:
    h = bytearray(header("rules/a.rules", 1))
    h[0] = ord("R")
    refused(bytes(h) + b"x".ljust(512, b"\0") + end(), "bad checksum")


def test_too_many_members_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netsec.bundle, "MAX_FILES", 3)
    refused(b"".join(member(f"rules/r{i}.rules", b"x") for i in range(4)) + end(),
            "more than 3 files")


@pytest.mark.parametrize("where", ["signatures", "manifest"])
def test_deep_json_is_refused_before_it_is_parsed(where: str) -> None:
    """json recurses: 30000 brackets (60 KB) raised RecursionError out of verify."""
    deep = deep_json(30_000)
    data = signed_members(manifest(), signatures=deep) if where == "signatures" \
        else signed_members(deep)
    refused(data + end(), f"{where}.json: nested deeper than 8")


def test_json_with_too_many_values_is_refused() -> None:
    refused(signed_members(b"[" + b"0," * 40_000 + b"0]") + end(), "manifest.json: more than")


@pytest.mark.timeout(10)
def test_a_hostile_string_costs_one_pass() -> None:
    """Backslash-quote pairs with no closing quote: the old scan retried each quote, ~11 s
    for these 64 KB (an hour for a 1 MB manifest)."""
    started = time.monotonic()
    refused(signed_members(manifest(), signatures=b'"\\' * 32_000) + end(),
            "signatures.json: JSONDecodeError")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("change", "reason"), [
    ({"version": MAX_VERSION + 1}, "version 18446744073709551616 is not a positive integer "
     "of at most 64 bits"),
    ({"created": (NOW + dt.timedelta(days=365 * 300)).isoformat(),
      "expires": (NOW + dt.timedelta(days=365 * 300 + 1)).isoformat()}, "from the future"),
    ({"expires": (NOW + dt.timedelta(days=367)).isoformat()}, "valid for 367 days, over"),
    ({"expires": NOW.isoformat()}, "is not after created"),
    ({"created": "2026-11-24T12:00:00" + "0" * 100}, "is not an ISO 8601 time"),
    ({"provider": "a" * 129}, "provider must be a name"),
    ({"files": {"rules/a.rules": {"size": 1 << 40, "sha256": "0" * 64}}},
     "size and sha256 malformed"),
])
def test_signed_numbers_and_dates_are_held_to_the_wire_and_the_clock(
        change: dict, reason: str) -> None:
    refused(signed_members(manifest(**change)) + end(), reason)


def test_a_version_of_5000_digits_is_refused() -> None:
    raw = manifest(version=7).replace(b'"version": 7', b'"version": ' + b"9" * 5000)
    refused(signed_members(raw) + end(), "manifest.json: ValueError: Exceeds the limit")


def test_the_highest_version_the_channel_carries_is_taken() -> None:
    data = assemble({"rules/p.rules": RULE.format(n=1).encode()}, key=KEY, provider="acme",
                    version=MAX_VERSION, created=NOW, valid_days=1)
    assert verify(data, trusted(), now=NOW, min_version=0).version == MAX_VERSION


def test_a_bundle_from_the_future_is_taken_within_the_clock_skew_only() -> None:
    data = assemble({"rules/p.rules": RULE.format(n=1).encode()}, key=KEY, provider="acme",
                    version=1, created=NOW + CLOCK_SKEW, valid_days=1)
    assert verify(data, trusted(), now=NOW, min_version=0).version == 1
    e = refused(data, "from the future", now=NOW - dt.timedelta(seconds=1))
    assert isinstance(e, NotNow)
