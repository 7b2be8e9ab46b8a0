"""EVE JSON: Suricata's event records, field for field, so existing EVE consumers read ours.

Builders return plain dicts (sans-IO); `EveWriter` serialises one object per line to any
text stream. Field names follow docs.suricata.io "EVE JSON Format".
"""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from netsec.packet import Packet

Event = dict[str, Any]


def timestamp(ts: float) -> str:
    """`2024-01-02T03:04:05.123456+0000`, as Suricata writes it (in UTC here)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f%z")


def base(event_type: str, pkt: Packet, *, flow_id: int | None = None,
         app_proto: str | None = None, to_server: bool | None = None) -> Event:
    """The common head of a per-packet event: time, flow id, pcap_cnt, 5-tuple."""
    ev: Event = {"timestamp": timestamp(pkt.ts)}
    if flow_id:
        ev["flow_id"] = flow_id
    if pkt.pcap_cnt:
        ev["pcap_cnt"] = pkt.pcap_cnt
    ev["event_type"] = event_type
    ev["src_ip"] = pkt.src
    if pkt.ip_proto in (6, 17, 132):
        ev["src_port"] = pkt.sport
    ev["dest_ip"] = pkt.dst
    if pkt.ip_proto in (6, 17, 132):
        ev["dest_port"] = pkt.dport
    ev["proto"] = pkt.proto_name
    if pkt.icmp_type is not None:
        ev["icmp_type"] = pkt.icmp_type
        ev["icmp_code"] = pkt.icmp_code
    if app_proto and app_proto != "failed":
        ev["app_proto"] = app_proto
    if to_server is not None and flow_id:
        ev["direction"] = "to_server" if to_server else "to_client"
    return ev


def alert(pkt: Packet, *, action: str, gid: int, sid: int, rev: int, msg: str,
          category: str, severity: int, metadata: dict[str, list[str]] | None = None,
          flow_id: int | None = None, app_proto: str | None = None,
          to_server: bool | None = None, tx_id: int | None = None) -> Event:
    ev = base("alert", pkt, flow_id=flow_id, app_proto=app_proto, to_server=to_server)
    if tx_id is not None:
        ev["tx_id"] = tx_id
    body: Event = {"action": action, "gid": gid, "signature_id": sid, "rev": rev,
                   "signature": msg, "category": category, "severity": severity}
    if metadata:
        body["metadata"] = metadata
    ev["alert"] = body
    return ev


def alert_at(ts: float, *, src_ip: str, dest_ip: str, proto: str, action: str,
             signature: str, category: str, severity: int,
             hyperwall: dict[str, str]) -> Event:
    """An alert no rule raised on a packet (sys-sec's controller: a name its resolver
    sinkholed, block lists the owner must know failed): the time and addresses stand in for
    the packet, signature_id 0 for the rule, and `hyperwall` says what it concerns, as the
    readers (netsec.evelog, the report) take it."""
    return {"timestamp": timestamp(ts), "event_type": "alert", "src_ip": src_ip,
            "dest_ip": dest_ip, "proto": proto,
            "alert": {"action": action, "signature_id": 0, "signature": signature,
                      "category": category, "severity": severity},
            "hyperwall": hyperwall}


def drop(pkt: Packet, *, flow_id: int | None = None, app_proto: str | None = None,
         to_server: bool | None = None) -> Event:
    """The `drop` record: the dropped packet's IP and TCP header fields."""
    ev = base("drop", pkt, flow_id=flow_id, app_proto=app_proto, to_server=to_server)
    body: Event = {"len": pkt.ip_len, "tos": 0, "ttl": pkt.ttl, "ipid": pkt.ip_id}
    if pkt.ip_proto == 6:
        f = pkt.tcp_flags
        body.update({"tcpseq": pkt.seq, "tcpack": pkt.ack, "tcpwin": pkt.window,
                     "syn": bool(f & 0x02), "ack": bool(f & 0x10), "psh": bool(f & 0x08),
                     "rst": bool(f & 0x04), "urg": bool(f & 0x20), "fin": bool(f & 0x01),
                     "tcpres": 0, "tcpurgp": 0})
    elif pkt.ip_proto == 17:
        body["udplen"] = len(pkt.payload) + 8
    ev["drop"] = body
    return ev


def anomaly(pkt: Packet, name: str, *, flow_id: int | None = None,
            app_proto: str | None = None) -> Event:
    """The `anomaly` record of one `Packet.events` name, as Suricata's JsonAnomalyLogger:

    - a decoder event ("ipv4.trunc_pkt"): `{"type": "decode", "event":
      "decoder.ipv4.trunc_pkt"}`;
    - a stream event ("stream.reassembly_overlap_different_data"): `{"type": "stream",
      "event": <the name>}`;
    - an app-layer event ("applayer.http.request_field_too_long"): `{"app_proto": "http",
      "type": "applayer", "event": "REQUEST_FIELD_TOO_LONG", "layer": "proto_parser"}`,
      the parser's event in Suricata's upper case.
    """
    kind, _, rest = name.partition(".")
    if kind == "applayer":
        proto, _, event = rest.partition(".")
        ev = base("anomaly", pkt, flow_id=flow_id)
        ev["anomaly"] = {"app_proto": proto, "type": "applayer", "event": event.upper(),
                         "layer": "proto_parser"}
        return ev
    ev = base("anomaly", pkt, flow_id=flow_id, app_proto=app_proto)
    if kind == "stream":
        ev["anomaly"] = {"type": "stream", "event": name}
    else:
        ev["anomaly"] = {"type": "decode",
                         "event": name if kind == "decoder" else "decoder." + name}
    return ev


def flow_end(flow: Any) -> Event:
    """The `flow` record of an ended flow (netsec.flow's Flow), client as the source."""
    body = flow.eve_flow()
    body["start"], body["end"] = timestamp(body["start"]), timestamp(body["end"])
    ev: Event = {"timestamp": body["end"], "flow_id": flow.flow_id, "event_type": "flow",
                 "src_ip": flow.src}
    if flow.proto in (6, 17, 132):
        ev["src_port"] = flow.sport
    ev["dest_ip"] = flow.dst
    if flow.proto in (6, 17, 132):
        ev["dest_port"] = flow.dport
    ev["proto"] = flow.proto_name
    if flow.app_proto and flow.app_proto != "failed":
        ev["app_proto"] = flow.app_proto
    ev["flow"] = body
    if flow.proto == 6:
        ev["tcp"] = flow.eve_tcp()
    return ev


def app_record(flow: Any, event_type: str, record: dict, tx_id: int, to_server: bool,
               pkt: Packet | None) -> Event:
    """A `dns`/`http`/`tls` record; at flow end (no packet) it carries the flow's tuple."""
    if pkt is not None:
        ev = base(event_type, pkt, flow_id=flow.flow_id, app_proto=None, to_server=None)
    else:
        ev = flow_end(flow)
        del ev["flow"]
        ev.pop("tcp", None)
        ev.pop("app_proto", None)
        ev["event_type"] = event_type
        ev["timestamp"] = timestamp(flow.end)
    ev["tx_id"] = tx_id
    ev[event_type] = record
    return ev


def fileinfo(flow: Any, info: dict, http: dict | None, tx_id: int, to_server: bool,
             pkt: Packet | None) -> Event:
    """Suricata's `fileinfo` record: the file (netsec.files' File.eve()) and the http
    object of the transaction that carried it. The tuple is the file's direction, as
    Suricata logs it (LOG_DIR_FLOW_TOSERVER/TOCLIENT), whichever packet completed the file:
    `dest_ip` is where the file was going (the domain a reader attributes it to)."""
    ev = app_record(flow, "fileinfo", info, tx_id, to_server, pkt)
    sender = flow.src if to_server else flow.dst
    if ev.get("src_ip") != sender:
        ev["src_ip"], ev["dest_ip"] = ev["dest_ip"], ev["src_ip"]
        if "src_port" in ev:
            ev["src_port"], ev["dest_port"] = ev["dest_port"], ev["src_port"]
    ev["app_proto"] = "http"
    ev["direction"] = "to_server" if to_server else "to_client"
    if http is not None:
        ev["http"] = http
    ev["fileinfo"] = ev.pop("fileinfo")   # after http, as Suricata orders them
    return ev


def stats(ts: float, uptime: int, decoder: dict[str, int], flow: dict[str, int],
          alerts: int) -> Event:
    return {"timestamp": timestamp(ts), "event_type": "stats",
            "stats": {"uptime": uptime, "decoder": decoder, "flow": flow,
                      "detect": {"alert": alerts}}}


class Sink(Protocol):
    def write(self, text: str, /) -> int: ...


class AppendLog:
    """An EVE file several processes append to (one per ipsd worker): O_APPEND, and each
    whole line in one write(2), which the kernel does not interleave with another process's
    write to the same file. A buffered text file would split a line longer than its buffer
    into several writes, and another worker's line could land between them."""

    def __init__(self, path: Path, mode: int = 0o666) -> None:   # less the umask, as open()
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)

    def write(self, text: str) -> int:
        data = text.encode()
        done = os.write(self.fd, data)
        if done != len(data):   # a full disk: the rest would be a torn line, so say so
            raise OSError(f"{self.path}: wrote {done} of {len(data)} bytes of an EVE line")
        return done

    def flush(self) -> None:
        """Nothing is buffered: each write is already in the file."""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class EveWriter:
    """One JSON object per line, in the order events are written; each line is handed to
    `out` in one call (AppendLog makes that one write(2))."""

    def __init__(self, out: Sink) -> None:
        self.out = out
        self.count = 0

    def write(self, event: Event) -> None:
        self.out.write(json.dumps(event, separators=(",", ":")) + "\n")
        self.count += 1
