"""Running a command inside a domain over xenstore (sans-IO): the keys and their checks.

On Xen, dom0 reaches a guest only through xenstore, so `exec` is a request/response over
keys, answered by the in-domain agent (`domains/exec_service.py`); dom0's side is
`dom0/guest_exec.py`. Paths below are relative to the domain's `/local/domain/<domid>`.

Request, in `hyperwall/exec/<n>/` (dom0's, read-only for the guest, so a guest cannot
forge one); `<n>` is a decimal id dom0 picks and never reuses while it is present:
- `timeout`: seconds, a decimal such as `2.5`, 0 < timeout <= MAX_TIMEOUT;
- `stdin-chunks` and `stdin/<k>` (k = 0..count-1): stdin in base64 chunks, optional;
- `argv`: a JSON array of strings, non-empty, run as is (never through a shell).
dom0 writes a request in one transaction with `argv` last; `argv` marks it complete: the
agent ignores an id whose `argv` does not exist (yet).

Result, in the guest-writable `data/hyperwall/exec/<n>/`, written by the agent:
- `started`: written before the command runs; an agent that finds it without `rc` after a
  restart answers rc 125 rather than running the command twice;
- `stdout-chunks`, `stdout/<k>`, `stderr-chunks`, `stderr/<k>`: base64 chunks of at most
  CHUNK_CHARS characters each (a value fits xenstored's 2048-byte value quota), each stream
  capped at OUTPUT_CAP bytes (a guest stays far under its 1000-node quota);
- `stdout-truncated`, `stderr-truncated`: "1" when the stream went over the cap (the first
  OUTPUT_CAP bytes are kept); absent otherwise;
- `rc`: the exit status, 0..255, written LAST: it is what dom0 waits on. As a shell does:
  127 when the program cannot be found, 126 when it cannot be executed, 128+N when killed
  by signal N; 124 when it ran past its timeout and was killed (as `timeout(1)`); 2 for a
  request the agent could not parse; the reason goes to stderr.
For dom0, everything in the result is untrusted guest output: `decode_result` bounds
and checks every key it reads.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dom0.xenstore.paths import Node, domain_path

REQUESTS = "hyperwall/exec"           # relative to the domain's directory
RESULTS = "data/hyperwall/exec"

CHUNK_BYTES = 1152                    # raw bytes per chunk ...
CHUNK_CHARS = 1536                    # ... which is this many base64 characters
OUTPUT_CAP = 48 * 1024                # per stream
OUTPUT_CHUNKS = -(-OUTPUT_CAP // CHUNK_BYTES)
STDIN_CAP = 256 * 1024
STDIN_CHUNKS = -(-STDIN_CAP // CHUNK_BYTES)
ARGV_MAX = 2048                       # the JSON of argv is one value
MAX_TIMEOUT = 24 * 3600.0
MAX_ID_DIGITS = 20

RC_USAGE = 2          # the request could not be parsed
RC_TIMEOUT = 124      # as timeout(1)
RC_LOST = 125         # the agent restarted while the command ran
RC_NOEXEC = 126
RC_NOTFOUND = 127

_DECIMAL = re.compile(r"[0-9]{1,10}(\.[0-9]{1,9})?")
_COUNT = re.compile(r"0|[1-9][0-9]{0,5}")
_RC = re.compile(r"0|[1-9][0-9]{0,2}")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class ExecProtocolError(ValueError):
    """A request or a result that breaks the protocol; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ExecRequest:
    argv: list[str]
    timeout: float
    stdin: bytes = b""


@dataclass(frozen=True)
class ExecOutput:
    rc: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False


# -- ids ---------------------------------------------------------------------------------

def is_request_id(name: str) -> bool:
    return 0 < len(name) <= MAX_ID_DIGITS and name.isascii() and name.isdigit() and \
        (name == "0" or name[0] != "0")


def next_request_id(present: list[str], last: int, now_us: int) -> int:
    """A fresh id: above `last` (this process's previous one), above every id still present
    in the request or result directory (`present`), and at least the clock in
    microseconds, so a restarted dom0 does not reuse an id from before."""
    highest = max((int(n) for n in present if is_request_id(n)), default=-1)
    return max(last + 1, highest + 1, now_us)


def request_dir(domid: int, req_id: int) -> str:
    return f"{domain_path(domid)}/{REQUESTS}/{req_id}"


def result_dir(domid: int, req_id: int) -> str:
    return f"{domain_path(domid)}/{RESULTS}/{req_id}"


# -- the request: dom0 builds it, the agent parses it --------------------------------------

def _chunks(data: bytes) -> list[str]:
    return [base64.b64encode(data[i:i + CHUNK_BYTES]).decode("ascii")
            for i in range(0, len(data), CHUNK_BYTES)]


def _check_argv(argv: object, key: str = "argv") -> list[str]:
    if not isinstance(argv, list):
        raise ExecProtocolError(key, f"must be a JSON array of strings, not {type(argv).__name__}")
    if not argv:
        raise ExecProtocolError(key, "is empty: name a program to run")
    for i, item in enumerate(argv):
        if not isinstance(item, str):
            raise ExecProtocolError(key, f"item {i} is {type(item).__name__}, not a string")
        if "\0" in item:
            raise ExecProtocolError(key, f"item {i} contains a NUL byte")
    return argv


def _check_timeout(timeout: float, key: str = "timeout") -> float:
    if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
        raise ExecProtocolError(key, f"{timeout!r} is not between 0 and {MAX_TIMEOUT:g} s")
    return timeout


def request_nodes(domid: int, req_id: int, argv: list[str], timeout: float,
                  stdin: bytes | None = None) -> list[Node]:
    """The nodes of one request, to be written in one transaction (`argv` last)."""
    _check_argv(argv)
    _check_timeout(timeout)
    timeout_text = f"{timeout:.3f}"
    if float(timeout_text) <= 0:
        raise ExecProtocolError("timeout", f"{timeout!r} rounds to 0 (at least 0.001 s)")
    argv_text = json.dumps(argv)
    if len(argv_text.encode()) > ARGV_MAX:
        raise ExecProtocolError("argv", f"is {len(argv_text.encode())} bytes as JSON; at most "
                                f"{ARGV_MAX} fit in one xenstore value (pass a script on stdin)")
    stdin = stdin or b""
    if len(stdin) > STDIN_CAP:
        raise ExecProtocolError("stdin", f"is {len(stdin)} bytes; at most {STDIN_CAP}")
    d = request_dir(domid, req_id)
    # dom0 owns it, the guest may only read it (children inherit).
    nodes = [Node(d, None, ("n0", f"r{domid}")), Node(f"{d}/timeout", timeout_text)]
    if stdin:
        chunks = _chunks(stdin)
        nodes.append(Node(f"{d}/stdin-chunks", str(len(chunks))))
        nodes += [Node(f"{d}/stdin/{k}", c) for k, c in enumerate(chunks)]
    nodes.append(Node(f"{d}/argv", argv_text))
    return nodes


REQUEST_HEADER_KEYS = ("argv", "timeout", "stdin-chunks")
RESULT_HEADER_KEYS = ("rc", "stdout-chunks", "stderr-chunks", "stdout-truncated",
                      "stderr-truncated")


def _text(key: str, value: bytes | None, encoding: str = "ascii") -> str:
    if value is None:
        raise ExecProtocolError(key, "is missing")
    try:
        return value.decode(encoding)
    except UnicodeDecodeError:
        raise ExecProtocolError(key, f"is not {encoding.upper()}: {value[:40]!r}") from None


def _count(key: str, value: bytes | None, limit: int, *, required: bool = True) -> int:
    if value is None and not required:
        return 0
    text = _text(key, value)
    if not _COUNT.fullmatch(text):
        raise ExecProtocolError(key, f"{text[:40]!r} is not a chunk count")
    if int(text) > limit:
        raise ExecProtocolError(key, f"{text} chunks is more than the {limit} allowed")
    return int(text)


def request_chunk_keys(header: Mapping[str, bytes | None]) -> list[str]:
    """The stdin chunk keys to read, from a request's `stdin-chunks` (checked)."""
    n = _count("stdin-chunks", header.get("stdin-chunks"), STDIN_CHUNKS, required=False)
    return [f"stdin/{k}" for k in range(n)]


def _stream(values: Mapping[str, bytes | None], name: str, count: int, cap: int) -> bytes:
    out = bytearray()
    for k in range(count):
        key = f"{name}/{k}"
        text = _text(key, values.get(key))
        if len(text) > CHUNK_CHARS:
            raise ExecProtocolError(key, f"is {len(text)} characters; at most {CHUNK_CHARS}")
        if not _B64.fullmatch(text):
            raise ExecProtocolError(key, "is not base64")
        try:
            out += base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ExecProtocolError(key, "is not base64 (bad padding)") from None
        if len(out) > cap:
            raise ExecProtocolError(name, f"is more than {cap} bytes")
    return bytes(out)


def parse_request(values: Mapping[str, bytes | None]) -> ExecRequest:
    """A request as read from the store: `argv`, `timeout`, `stdin-chunks`, `stdin/<k>`."""
    argv_text = _text("argv", values.get("argv"), "utf-8")
    try:
        argv = json.loads(argv_text)
    except ValueError as e:
        raise ExecProtocolError("argv", f"is not JSON ({e})") from None
    argv = _check_argv(argv)
    timeout_text = _text("timeout", values.get("timeout"))
    if not _DECIMAL.fullmatch(timeout_text):
        raise ExecProtocolError("timeout", f"{timeout_text[:40]!r} is not a decimal number "
                                "of seconds")
    timeout = _check_timeout(float(timeout_text))
    n = _count("stdin-chunks", values.get("stdin-chunks"), STDIN_CHUNKS, required=False)
    return ExecRequest(argv, timeout, _stream(values, "stdin", n, STDIN_CAP))


# -- the result: the agent encodes it, dom0 decodes it -------------------------------------

def returncode(raw: int) -> int:
    """An exit status as a shell reports it: a process killed by signal N gives 128+N."""
    return 128 - raw if raw < 0 else raw & 0xFF


def encode_result(rc: int, stdout: bytes, stderr: bytes) -> list[tuple[str, str]]:
    """(key relative to the result directory, value) in the order to write them: `rc` last.
    Each stream over OUTPUT_CAP keeps its first OUTPUT_CAP bytes and is flagged truncated."""
    if not 0 <= rc <= 255:
        raise ExecProtocolError("rc", f"{rc} is not an exit status (0..255)")
    pairs: list[tuple[str, str]] = []
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        chunks = _chunks(data[:OUTPUT_CAP])
        pairs += [(f"{name}/{k}", c) for k, c in enumerate(chunks)]
        pairs.append((f"{name}-chunks", str(len(chunks))))
        if len(data) > OUTPUT_CAP:
            pairs.append((f"{name}-truncated", "1"))
    pairs.append(("rc", str(rc)))
    return pairs


def result_chunk_keys(header: Mapping[str, bytes | None]) -> list[str]:
    """The chunk keys to read, from a result's (untrusted) chunk counts, checked."""
    keys = []
    for name in ("stdout", "stderr"):
        n = _count(f"{name}-chunks", header.get(f"{name}-chunks"), OUTPUT_CHUNKS)
        keys += [f"{name}/{k}" for k in range(n)]
    return keys


def _flag(key: str, value: bytes | None) -> bool:
    if value is None:
        return False
    text = _text(key, value)
    if text == "0":
        return False
    if text == "1":
        return True
    raise ExecProtocolError(key, f"{text[:40]!r} is not 0 or 1")


def decode_result(values: Mapping[str, bytes | None]) -> ExecOutput:
    """A result as read back from the guest (untrusted): every key checked and bounded."""
    rc_text = _text("rc", values.get("rc"))
    if not _RC.fullmatch(rc_text) or int(rc_text) > 255:
        raise ExecProtocolError("rc", f"{rc_text[:40]!r} is not an exit status (0..255)")
    streams = {}
    for name in ("stdout", "stderr"):
        n = _count(f"{name}-chunks", values.get(f"{name}-chunks"), OUTPUT_CHUNKS)
        streams[name] = _stream(values, name, n, OUTPUT_CAP)
    return ExecOutput(int(rc_text), streams["stdout"], streams["stderr"],
                      _flag("stdout-truncated", values.get("stdout-truncated")),
                      _flag("stderr-truncated", values.get("stderr-truncated")))
