"""The exec-over-xenstore protocol core: requests and results round-trip, and every
malformed key is refused with an error naming it."""
from __future__ import annotations

import base64
import json

import pytest

from dom0.layout import Node
from dom0.xenstore import execproto as xp

DOMID = 7


def request_values(nodes: list[Node], domid: int = DOMID, req_id: int = 1) -> dict[str, bytes]:
    """What the agent reads back: values keyed relative to the request directory."""
    d = xp.request_dir(domid, req_id)
    return {n.path[len(d) + 1:]: n.value.encode() for n in nodes
            if n.value is not None and n.path != d}


def result_values(pairs: list[tuple[str, str]]) -> dict[str, bytes]:
    return {k: v.encode() for k, v in pairs}


# -- requests ------------------------------------------------------------------------------

def test_request_nodes_layout_and_order() -> None:
    nodes = xp.request_nodes(DOMID, 42, ["echo", "hi"], 2.5, b"in")
    d = "/local/domain/7/hyperwall/exec/42"
    assert nodes[0] == Node(d, None, ("n0", "r7"))
    assert nodes[-1] == Node(f"{d}/argv", '["echo", "hi"]'), "argv marks it complete: last"
    assert [n.path for n in nodes[1:-1]] == [f"{d}/timeout", f"{d}/stdin-chunks", f"{d}/stdin/0"]
    assert all(n.perms is None for n in nodes[1:]), "the rest inherit dom0-owned, guest-read"
    assert xp.result_dir(DOMID, 42) == "/local/domain/7/data/hyperwall/exec/42"


@pytest.mark.parametrize("stdin", [None, b"", b"hello\n", bytes(range(256)) * 20,
                                   b"\0\xff" * (xp.STDIN_CAP // 2)])
def test_request_round_trip(stdin: bytes | None) -> None:
    argv = ["sh", "-c", "printf '%s' \"$1\"", "-", "ünïcode \"quoted\" ; rm -rf /"]
    values = request_values(xp.request_nodes(DOMID, 1, argv, 0.5, stdin))
    assert xp.request_chunk_keys(values) == [k for k in values if k.startswith("stdin/")]
    assert all(len(v) <= xp.CHUNK_CHARS for v in values.values())
    req = xp.parse_request(values)
    assert req == xp.ExecRequest(argv, 0.5, stdin or b"")


@pytest.mark.parametrize(("argv", "timeout", "stdin", "key", "problem"), [
    ([], 1.0, None, "argv", "empty"),
    ("echo hi", 1.0, None, "argv", "JSON array"),
    (["echo", 3], 1.0, None, "argv", "item 1 is int"),
    (["a\0b"], 1.0, None, "argv", "NUL"),
    (["x" * 3000], 1.0, None, "argv", "one xenstore value"),
    (["true"], 0.0, None, "timeout", "between"),
    (["true"], -1.0, None, "timeout", "between"),
    (["true"], float("nan"), None, "timeout", "between"),
    (["true"], xp.MAX_TIMEOUT + 1, None, "timeout", "between"),
    (["true"], 0.0001, None, "timeout", "rounds to 0"),
    (["true"], 1.0, b"x" * (xp.STDIN_CAP + 1), "stdin", "at most"),
])
def test_request_nodes_refuse_bad_arguments(argv: list[str], timeout: float, stdin: bytes | None,
                                            key: str, problem: str) -> None:
    with pytest.raises(xp.ExecProtocolError, match=problem) as e:
        xp.request_nodes(DOMID, 1, argv, timeout, stdin)
    assert e.value.key == key and str(e.value).startswith(f"{key}: ")


GOOD = {"argv": b'["true"]', "timeout": b"1"}


@pytest.mark.parametrize(("changes", "key", "problem"), [
    ({"argv": None}, "argv", "missing"),
    ({"argv": b"[not json"}, "argv", "not JSON"),
    ({"argv": b'{"a": 1}'}, "argv", "JSON array of strings, not dict"),
    ({"argv": b'"echo"'}, "argv", "not str"),
    ({"argv": b"[]"}, "argv", "empty"),
    ({"argv": b'["echo", null]'}, "argv", "item 1 is NoneType"),
    ({"argv": b'["\xff"]'}, "argv", "not UTF-8"),
    ({"timeout": None}, "timeout", "missing"),
    ({"timeout": b"soon"}, "timeout", "not a decimal"),
    ({"timeout": b"1e3"}, "timeout", "not a decimal"),
    ({"timeout": b"-1"}, "timeout", "not a decimal"),
    ({"timeout": b"0"}, "timeout", "between"),
    ({"timeout": b"99999999"}, "timeout", "between"),
    ({"stdin-chunks": b"two"}, "stdin-chunks", "not a chunk count"),
    ({"stdin-chunks": b"-1"}, "stdin-chunks", "not a chunk count"),
    ({"stdin-chunks": str(xp.STDIN_CHUNKS + 1).encode()}, "stdin-chunks", "more than"),
    ({"stdin-chunks": b"1"}, "stdin/0", "missing"),
    ({"stdin-chunks": b"1", "stdin/0": b"!!!!"}, "stdin/0", "not base64"),
    ({"stdin-chunks": b"1", "stdin/0": b"abc"}, "stdin/0", "bad padding"),
])
def test_parse_request_names_the_bad_key(changes: dict[str, bytes | None], key: str,
                                         problem: str) -> None:
    values = {**GOOD, **changes}
    with pytest.raises(xp.ExecProtocolError, match=problem) as e:
        xp.parse_request(values)
    assert e.value.key == key and str(e.value).startswith(f"{key}: ")


def test_argv_as_json_is_read_from_any_writer() -> None:
    # A hand-written request (xenstore-write) is read the same way as dom0's.
    req = xp.parse_request({"argv": json.dumps(["ls", "-l"]).encode(), "timeout": b"10.25"})
    assert req.argv == ["ls", "-l"] and req.timeout == 10.25 and req.stdin == b""
    utf8 = xp.parse_request({"argv": '["echo", "é"]'.encode(), "timeout": b"1"})
    assert utf8.argv == ["echo", "é"]


# -- results -------------------------------------------------------------------------------

def decode(pairs: list[tuple[str, str]]) -> xp.ExecOutput:
    values = result_values(pairs)
    header = {k: values.get(k) for k in xp.RESULT_HEADER_KEYS}
    chunk_keys = xp.result_chunk_keys(header)
    assert set(chunk_keys) == {k for k in values if "/" in k}
    return xp.decode_result(values)


def test_result_round_trip_small() -> None:
    pairs = xp.encode_result(3, b"out\n", b"\x00\xff err")
    assert pairs[-1] == ("rc", "3"), "rc is written last"
    assert decode(pairs) == xp.ExecOutput(3, b"out\n", b"\x00\xff err")


def test_result_round_trip_empty() -> None:
    pairs = xp.encode_result(0, b"", b"")
    assert pairs == [("stdout-chunks", "0"), ("stderr-chunks", "0"), ("rc", "0")]
    assert decode(pairs) == xp.ExecOutput(0, b"", b"")


def test_large_output_is_chunked_and_truncated_at_the_cap() -> None:
    big = bytes(range(256)) * 1000                      # 256 000 bytes, over the 48 KiB cap
    exact = b"e" * xp.OUTPUT_CAP
    pairs = xp.encode_result(0, big, exact)
    assert all(len(v) <= xp.CHUNK_CHARS for _, v in pairs)
    assert len(pairs) <= 2 * xp.OUTPUT_CHUNKS + 5, "a result stays far under the node quota"
    assert ("stdout-truncated", "1") in pairs and not any(k == "stderr-truncated"
                                                          for k, _ in pairs)
    out = decode(pairs)
    assert out.stdout == big[:xp.OUTPUT_CAP] and out.stdout_truncated
    assert out.stderr == exact and not out.stderr_truncated


def test_returncode_as_a_shell_reports_it() -> None:
    assert xp.returncode(0) == 0 and xp.returncode(3) == 3
    assert xp.returncode(-9) == 137 and xp.returncode(-15) == 143
    with pytest.raises(xp.ExecProtocolError, match="rc: 300"):
        xp.encode_result(300, b"", b"")


GOOD_RESULT = {"rc": b"0", "stdout-chunks": b"1", "stdout/0": base64.b64encode(b"hi"),
               "stderr-chunks": b"0"}


@pytest.mark.parametrize(("changes", "key", "problem"), [
    ({"rc": None}, "rc", "missing"),
    ({"rc": b"zero"}, "rc", "not an exit status"),
    ({"rc": b"-1"}, "rc", "not an exit status"),
    ({"rc": b"256"}, "rc", "not an exit status"),
    ({"rc": b"1.5"}, "rc", "not an exit status"),
    ({"rc": b"007"}, "rc", "not an exit status"),
    ({"rc": b"99999999999999999999"}, "rc", "not an exit status"),
    ({"stdout-chunks": None}, "stdout-chunks", "missing"),
    ({"stderr-chunks": b"x"}, "stderr-chunks", "not a chunk count"),
    ({"stdout-chunks": str(xp.OUTPUT_CHUNKS + 1).encode()}, "stdout-chunks", "more than"),
    ({"stdout-chunks": b"999999"}, "stdout-chunks", "more than"),
    ({"stdout-chunks": b"1000000"}, "stdout-chunks", "not a chunk count"),
    ({"stdout-chunks": b"2"}, "stdout/1", "missing"),
    ({"stdout/0": b"not base64!"}, "stdout/0", "not base64"),
    ({"stdout/0": b"aGk"}, "stdout/0", "bad padding"),
    ({"stdout/0": b"\xff\xfe"}, "stdout/0", "not ASCII"),
    ({"stdout/0": b"A" * (xp.CHUNK_CHARS + 4)}, "stdout/0", "characters; at most"),
    ({"stdout-truncated": b"yes"}, "stdout-truncated", "not 0 or 1"),
])
def test_decode_result_names_the_bad_key(changes: dict[str, bytes | None], key: str,
                                         problem: str) -> None:
    values = {**GOOD_RESULT, **changes}
    with pytest.raises(xp.ExecProtocolError, match=problem) as e:
        xp.decode_result(values)
    assert e.value.key == key and str(e.value).startswith(f"{key}: ")


def test_result_total_size_is_bounded() -> None:
    # Full-size chunks, each valid, one more than the cap allows in total.
    chunk = base64.b64encode(b"x" * xp.CHUNK_BYTES)
    n = xp.OUTPUT_CHUNKS
    values = {"rc": b"0", "stderr-chunks": b"0", "stdout-chunks": str(n).encode(),
              **{f"stdout/{k}": chunk for k in range(n)}}
    with pytest.raises(xp.ExecProtocolError, match="more than 49152 bytes") as e:
        xp.decode_result(values)
    assert e.value.key == "stdout"


def test_fresh_ids_never_reuse_what_is_present() -> None:
    assert xp.next_request_id([], 0, 1000) == 1000
    assert xp.next_request_id([], 5000, 1000) == 5001
    assert xp.next_request_id(["9000", "junk", "0123", "1" * 30], 0, 1000) == 9001
    assert xp.is_request_id("0") and xp.is_request_id("12")
    assert not any(xp.is_request_id(s) for s in ("", "01", "-1", "1a", "١", "9" * 21))
