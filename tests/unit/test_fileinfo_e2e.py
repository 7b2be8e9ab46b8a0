"""Files in flight end to end: scapy-built TCP sessions through the engine (flow table, both
HTTP parsers, netsec.files) -> EVE `fileinfo` records, and through ipsd's decisions to see
the domain a file was going to."""
from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP

from domains.syssec.ipsd import Ipsd
from netsec import flow as flow_mod
from netsec.cli import UsageError, parse_settings
from tests.unit.test_engine_e2e import C, S, run, tcp_session

PARSERS = ["libhtp", "python"]
NO_MATCH = 'alert tcp any any -> any any (msg:"none"; content:"never-in-these-pcaps"; sid:1;)\n'
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n"


def get(path: str = "/files/report.pdf") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: files.example\r\n\r\n".encode()


def response(body: bytes, *headers: str, status: str = "200 OK",
             length: int | None = None) -> bytes:
    head = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        head.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(data: bytes, size: int = 700) -> bytes:
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def segmented(pkts: list, size: int, reorder: bool = False) -> list:
    """The session with every server data packet cut into `size`-byte segments; with
    `reorder`, each packet's segments after the first arrive last-first (out of order, the
    hole filled by the first segment that is sent last)."""
    out = []
    for p in pkts:
        data = bytes(p[TCP].payload)
        if p[IP].src != S or len(data) <= size:
            out.append(p)
            continue
        segs = []
        for off in range(0, len(data), size):
            q = p.copy()
            q[TCP].remove_payload()
            q[TCP].seq = p[TCP].seq + off
            q = q / data[off:off + size]
            q.time = p.time
            segs.append(q)
        if reorder:
            segs = segs[2:][::-1] + segs[1:2] + segs[:1]
        out.extend(segs)
    return out


def fileinfos(tmp_path: Path, pkts: list, parser: str, rules: str = NO_MATCH,
              **cfg: int | bool | None) -> list[dict]:
    cfg.setdefault("file_tracking", True)
    config = flow_mod.FlowConfig(http_parser=parser, **cfg)  # type: ignore[arg-type]
    _, events = run(tmp_path, pkts, rules, flow_config=config)
    return [e for e in events if e["event_type"] == "fileinfo"]


def hashes(data: bytes) -> dict[str, str]:
    return {"md5": hashlib.md5(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest()}


def assert_whole(info: dict, data: bytes, name: str = "report.pdf") -> None:
    f = info["fileinfo"]
    assert (f["filename"], f["size"], f["state"], f["gaps"], f["stored"]) == \
        (name, len(data), "CLOSED", False, False), f
    assert {k: f[k] for k in ("md5", "sha1", "sha256")} == hashes(data)


@pytest.mark.parametrize("parser", PARSERS)
def test_plain_download_has_suricatas_fields_oriented_to_the_client(tmp_path: Path,
                                                                    parser: str) -> None:
    pkts = tcp_session([(get(), response(PDF, "Content-Type: application/pdf"))])
    [info] = fileinfos(tmp_path, pkts, parser)
    assert_whole(info, PDF)
    assert info["fileinfo"]["magic"].startswith("PDF document")
    assert info["fileinfo"]["tx_id"] == info["tx_id"] == 0
    # the file's direction, whichever packet completed it: the server sends to the client
    assert (info["src_ip"], info["src_port"], info["dest_ip"], info["dest_port"]) == \
        (S, 80, C, 41000)
    assert info["direction"] == "to_client" and info["app_proto"] == "http"
    assert info["http"]["url"] == "/files/report.pdf" and info["http"]["status"] == 200
    assert list(info).index("http") < list(info).index("fileinfo")


@pytest.mark.parametrize("parser", PARSERS)
def test_chunked_body_is_dechunked(tmp_path: Path, parser: str) -> None:
    pkts = tcp_session([(get(), response(chunked(PDF), "Transfer-Encoding: chunked"))])
    [info] = fileinfos(tmp_path, pkts, parser)
    assert_whole(info, PDF)


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_body_is_the_decoded_file(tmp_path: Path, parser: str,
                                             encoding: str) -> None:
    if encoding == "gzip":
        body = gzip.compress(PDF)
    elif encoding == "deflate":
        body = zlib.compress(PDF)
    else:   # deflate without its zlib header, as some servers send it
        c = zlib.compressobj(wbits=-15)
        body = c.compress(PDF) + c.flush()
    header = "gzip" if encoding == "gzip" else "deflate"
    pkts = tcp_session([(get(), response(body, f"Content-Encoding: {header}"))])
    [info] = fileinfos(tmp_path, pkts, parser)
    assert_whole(info, PDF)


@pytest.mark.parametrize("parser", PARSERS)
def test_two_files_on_one_keep_alive_connection(tmp_path: Path, parser: str) -> None:
    other = b"second file " * 300
    pkts = tcp_session([
        (get(), response(PDF)),
        (get("/dl?id=7"), response(other, 'Content-Disposition: attachment; '
                                          'filename="notes v2.txt"'))])
    first, second = fileinfos(tmp_path, pkts, parser)
    assert_whole(first, PDF)
    assert_whole(second, other, "notes v2.txt")
    assert (first["tx_id"], second["tx_id"]) == (0, 1)
    assert first["flow_id"] == second["flow_id"]
    assert second["http"]["url"] == "/dl?id=7"


@pytest.mark.parametrize("parser", PARSERS)
def test_range_response_is_a_partial_file_with_gaps(tmp_path: Path, parser: str) -> None:
    part = PDF[1000:3000]
    pkts = tcp_session([(get(), response(
        part, f"Content-Range: bytes 1000-2999/{len(PDF)}", status="206 Partial Content"))])
    [info] = fileinfos(tmp_path, pkts, parser)
    f = info["fileinfo"]
    assert (f["size"], f["state"], f["gaps"], f["start"], f["end"]) == \
        (2000, "CLOSED", True, 1000, 2999)
    assert f["sha256"] == hashlib.sha256(part).hexdigest()


@pytest.mark.parametrize("parser", PARSERS)
def test_upload_is_a_file_to_the_server(tmp_path: Path, parser: str) -> None:
    post = (b"POST /upload/backup.pdf HTTP/1.1\r\nHost: files.example\r\n"
            b"Content-Length: %d\r\n\r\n" % len(PDF)) + PDF
    pkts = tcp_session([(post, response(b"ok"))], split=300)
    up, down = fileinfos(tmp_path, pkts, parser)
    assert_whole(up, PDF, "backup.pdf")
    assert up["direction"] == "to_server"
    assert (up["src_ip"], up["dest_ip"], up["dest_port"]) == (C, S, 80)
    assert down["fileinfo"]["size"] == 2 and down["direction"] == "to_client"


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("reorder", [False, True])
def test_segmented_and_out_of_order_tcp(tmp_path: Path, parser: str, reorder: bool) -> None:
    pkts = segmented(tcp_session([(get(), response(chunked(PDF, 333),
                                                   "Transfer-Encoding: chunked"))]),
                     97, reorder)
    assert len(pkts) > 60
    [info] = fileinfos(tmp_path, pkts, parser)
    assert_whole(info, PDF)


@pytest.mark.parametrize("parser", PARSERS)
def test_complete_body_past_the_stream_depth_is_closed_not_truncated(
        tmp_path: Path, parser: str) -> None:
    """The lost session's bug: a complete body longer than the reassembly depth was
    TRUNCATED. The file keeps reading past the depth (up to file_max_size), and the state
    is the parser's word on the body, not where the stream stopped."""
    big = PDF * 8   # ~41 KB, the depth 4 KB
    pkts = segmented(tcp_session([(get(), response(big))]), 1400)
    [info] = fileinfos(tmp_path, pkts, parser, reassembly_depth=4096)
    assert_whole(info, big)


@pytest.mark.parametrize("parser", PARSERS)
def test_truncated_when_the_connection_ends_early_or_past_the_cap(tmp_path: Path,
                                                                  parser: str) -> None:
    short = tcp_session([(get(), response(PDF[:2000], length=len(PDF)))])
    [cut] = fileinfos(tmp_path, short, parser)
    assert (cut["fileinfo"]["state"], cut["fileinfo"]["size"], cut["fileinfo"]["gaps"]) == \
        ("TRUNCATED", 2000, True)
    half_chunked = chunked(PDF)[:2100]
    cut_chunks = tcp_session([(get(), response(half_chunked, "Transfer-Encoding: chunked"))])
    [cut] = fileinfos(tmp_path, cut_chunks, parser)
    assert cut["fileinfo"]["state"] == "TRUNCATED" and cut["fileinfo"]["size"] < 2100
    capped = tcp_session([(get(), response(PDF))])
    [over] = fileinfos(tmp_path, capped, parser, file_max_size=1024)
    assert (over["fileinfo"]["state"], over["fileinfo"]["size"]) == ("TRUNCATED", 1024)


def test_ipsd_names_the_domain_the_file_was_going_to(tmp_path: Path) -> None:
    """Through ipsd's decisions (raw IP packets, as NFQUEUE gives them): the fileinfo of a
    download names the client's domain, that of an upload too (its sender), and a guest
    downloading from another guest is attributed to the one receiving it."""
    rules = tmp_path / "r.rules"
    rules.write_text(NO_MATCH)
    domains = tmp_path / "domains.json"
    domains.write_text(json.dumps({C: "work"}))
    ipsd = Ipsd([rules], tmp_path / "log", domains, flow_mod.FlowConfig(inline=True,
                                                                   file_tracking=True))
    post = (b"POST /up/a.pdf HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(PDF)
            + PDF)
    events: list[dict] = []
    for p in tcp_session([(get(), response(PDF)), (post, response(b""))]):
        events += ipsd.decide(bytes(p[IP]), float(p.time)).eve
    ipsd.out.close()
    files = [e for e in events if e["event_type"] == "fileinfo"]
    assert [(f["direction"], f["hyperwall"]["domain"], f["hyperwall"]["guest_ip"])
            for f in files] == [("to_client", "work", C), ("to_server", "work", C)]
    assert files[0]["fileinfo"]["state"] == "CLOSED"


def test_files_cost_nothing_unless_asked_for(tmp_path: Path) -> None:
    """Off by default (no file keyword, no scanner): no tracker, no fileinfo, and the
    stream stops at its depth; `--set file-store.enabled=yes` turns it on, `=no` keeps it
    off whatever the rules say, and the size cap is `file-store.stream-depth`."""
    pkts = tcp_session([(get(), response(PDF))])
    assert fileinfos(tmp_path, pkts, "libhtp", file_tracking=None) == []
    table = flow_mod.FlowTable(flow_mod.FlowConfig())
    assert not table.tracks_files
    assert getattr(table._parser("http", True), "files", 0) is None

    sets = parse_settings(["file-store.enabled=yes", "file-store.stream-depth=2kb"]).flow
    assert sets == {"file_tracking": True, "file_max_size": 2048}
    [capped] = fileinfos(tmp_path, pkts, "libhtp", **sets)
    assert (capped["fileinfo"]["state"], capped["fileinfo"]["size"]) == ("TRUNCATED", 2048)
    table = flow_mod.FlowTable(flow_mod.FlowConfig(file_tracking=False))
    table.want_files(True)
    assert not table.tracks_files
    with pytest.raises(UsageError, match="file-store.stream-depth=0: want a size above 0"):
        parse_settings(["file-store.stream-depth=0"])
    with pytest.raises(UsageError, match="file-store.enabled=maybe"):
        parse_settings(["file-store.enabled=maybe"])
