"""File keywords: filename, fileext, filemagic, filesize, filemd5/filesha1/filesha256,
filestore (Suricata's legacy forms, docs rules/file-keywords).

They match on a file the flow table tracked (netsec.files), once, on the inspection of the
packet that ended it (an Inspection carrying `file`, with the `file.name` buffer). A rule
using one of them therefore inspects `file.name`: that is what makes the detector hand it
only file inspections, and what tells the engine that files must be tracked
(`netsec.files.rules_use_files`).

- `filename:"x"` / `filemagic:"x"`: x occurs in the name / libmagic's description (case
  sensitive, as Suricata without `nocase`); `fileext:"pdf"`: the name's extension is pdf
  (case insensitive). Each takes `!` before the quotes for "does not".
- `filesize`: the uint forms (`100`, `<100`, `>100`, `100<>200`, `100-200`, ...) against
  the size; a file that did not end whole (not CLOSED) has no final size, so only a lower
  bound (`>`, `>=`) can match it, as in Suricata.
- `filemd5:[!]list`: a list file relative to the rule file's folder, one hash a line (what
  follows the hash on its line is ignored, `#` lines are comments); matches a CLOSED file
  whose hash is (with `!`: is not) listed. Likewise filesha1, filesha256.
- `filestore`: accepted with any of Suricata's values; a matching file is logged with
  `stored: true` (there is no file store to write to).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from netsec.files import FILE_NAME, File, FileState
from netsec.inspection import Inspection
from netsec.rules.errors import RuleError
from netsec.rules.intrange import parse_uint
from netsec.rules.keywords import DOCS, Keyword, unquote
from netsec.rules.rule import Builder

_URL = DOCS + "file-keywords.html"
_LOWER_BOUND = re.compile(r"^\s*>=?\s*\d+\s*$")
_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64}


def _file_check(b: Builder, test: Callable[[File], bool]) -> None:
    b.rule.buffers.add(FILE_NAME)

    def check(ins: Inspection) -> bool:
        f = ins.file
        return f is not None and test(f)
    b.checks.append(check)


def _text(value: str | None, keyword: str) -> tuple[str, bool]:
    """A quoted value, and whether `!` negates it."""
    v = (value or "").strip()
    negated = v.startswith("!")
    text = unquote(v[1:] if negated else v, keyword)
    if not text:
        raise RuleError(f"{keyword}: empty value")
    return text, negated


def setup_filename(b: Builder, value: str | None) -> None:
    text, negated = _text(value, "filename")
    _file_check(b, lambda f: (text in f.name) != negated)


def setup_fileext(b: Builder, value: str | None) -> None:
    text, negated = _text(value, "fileext")
    ext = text.lower().lstrip(".")
    _file_check(b, lambda f: (f.ext == ext) != negated)


def setup_filemagic(b: Builder, value: str | None) -> None:
    text, negated = _text(value, "filemagic")
    _file_check(b, lambda f: (text in f.magic) != negated)


def setup_filesize(b: Builder, value: str | None) -> None:
    text = (value or "").strip()
    test = parse_uint(text, "filesize")
    lower_bound = bool(_LOWER_BOUND.match(text))
    _file_check(b, lambda f: (f.state == FileState.CLOSED or lower_bound) and test(f.size))


def load_hashes(path: Path, algo: str, keyword: str) -> frozenset[str]:
    """The hashes a list file holds; RuleError naming the keyword, the file and the line."""
    want = _HASH_LENGTHS[algo]
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise RuleError(f"{keyword}: cannot read the hash list {path}: "
                        f"{e.strerror or e}") from None
    found = set()
    for n, line in enumerate(lines, 1):
        word = line.strip().split(None, 1)[0] if line.strip() else ""
        if not word or word.startswith("#"):
            continue
        if len(word) != want or not all(c in "0123456789abcdefABCDEF" for c in word):
            raise RuleError(f"{keyword}: {path}:{n}: {word[:80]!r} is not a {algo} hash "
                            f"({want} hex digits)")
        found.add(word.lower())
    if not found:
        raise RuleError(f"{keyword}: {path}: no {algo} hash in the list")
    return frozenset(found)


def _hash_keyword(algo: str) -> Keyword:
    keyword = f"file{algo}"

    def setup(b: Builder, value: str | None) -> None:
        v = (value or "").strip()
        negated = v.startswith("!")
        name = v[1:].strip() if negated else v
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        if not name:
            raise RuleError(f"{keyword}: want the name of a hash list file")
        # relative to the folder of the rule file (rule.where is "path:line")
        rule_file = b.rule.where.rsplit(":", 1)[0]
        folder = Path(rule_file).parent if not rule_file.startswith("<") else Path.cwd()
        hashes = load_hashes(folder / name, algo, keyword)

        def test(f: File) -> bool:
            return f.state == FileState.CLOSED and (getattr(f, algo) in hashes) != negated
        _file_check(b, test)

    return Keyword(keyword, setup, f"the file's {algo} is (not) in a list file", _URL)


_FILESTORE = re.compile(r"^\s*(request|response|both|to_server|to_client)?\s*"
                        r"(?:,\s*(file|tx|ssn|flow)\s*)?$")


def setup_filestore(b: Builder, value: str | None) -> None:
    if value and not _FILESTORE.match(value):
        raise RuleError(f"filestore: want [direction][,scope] (e.g. to_client,file), "
                        f"got {value!r}")
    b.rule.buffers.add(FILE_NAME)

    def store(ins: Inspection) -> None:
        if ins.file is not None:
            ins.file.stored = True
    b.post.append(store)


KEYWORDS = (
    Keyword("filename", setup_filename, "the file's name contains a string", _URL),
    Keyword("fileext", setup_fileext, "the file name's extension", _URL),
    Keyword("filemagic", setup_filemagic, "libmagic's description contains a string", _URL),
    Keyword("filesize", setup_filesize, "the file's size (uint forms)", _URL),
    _hash_keyword("md5"),
    _hash_keyword("sha1"),
    _hash_keyword("sha256"),
    Keyword("filestore", setup_filestore, "log the matching file as stored", _URL,
            value=None),
)
