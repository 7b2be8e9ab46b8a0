"""The flow table: packets in, Inspections out, plus EVE records for ended flows and
application transactions. See `netsec.flow` for the contract."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from netsec.app import AppOutput
from netsec.app.dns import DnsParser
from netsec.app.http import HttpParser
from netsec.app.tls import TlsParser
from netsec.flow import detect as appdetect
from netsec.flow.config import FlowConfig
from netsec.flow.flow import (
    TCP_CLOSED,
    TCP_CLOSING,
    TCP_ESTABLISHED,
    TCP_NONE,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    Flow,
)
from netsec.flow.stream import Stream
from netsec.inspection import PKT, STREAM, Inspection
from netsec.packet import Packet

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_PROBE_LIMIT = 512        # bytes of one direction looked at before giving up on detection
_SWEEP_EVERY = 1.0        # seconds of capture time between timeout sweeps


@dataclass(slots=True)
class FlowEnd:
    """A flow ended (timeout, or shutdown at `flush()`): the data of an EVE `flow` event."""
    flow: Flow


@dataclass(slots=True)
class AppEvent:
    """A finished application transaction: the data of an EVE dns/http/tls event."""
    flow: Flow
    proto: str            # "dns", "http" or "tls": the EVE event_type and the object's key
    tx_id: int
    to_server: bool
    packet: Packet | None  # the packet that completed it (None when logged at flow end)
    record: dict          # the EVE object under `proto`


class FlowTable:
    def __init__(self, config: FlowConfig | None = None) -> None:
        self.config = config or FlowConfig()
        self._flows: dict[tuple, Flow] = {}   # both directions' keys -> flow
        self._count = 0
        self._next_sweep = 0.0
        self._events: list[FlowEnd | AppEvent] = []

    def __len__(self) -> int:
        return len(self._flows) // 2

    def drain_events(self) -> list[FlowEnd | AppEvent]:
        """The EVE records produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def flush(self) -> list[FlowEnd | AppEvent]:
        """End every flow (end of capture, reason "shutdown"); returns `drain_events()`."""
        for flow in list(self._flows.values()):
            if flow.key in self._flows:
                self._end(flow, "shutdown")
        return self.drain_events()

    def process(self, pkt: Packet) -> list[Inspection]:
        """The inspections for one packet: packet, then stream, then app-layer, in order."""
        if not pkt.ip_version:
            return [Inspection(pkt, None, True, {PKT: pkt.payload})]
        ts = pkt.ts
        if ts >= self._next_sweep:
            self._sweep(ts)
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.ip_proto, pkt.vlan)
        flow = self._flows.get(key)
        if flow is None:
            flow = self._new_flow(pkt, key)
        elif flow.closed and pkt.ip_proto == 6 and pkt.tcp_flags & (_SYN | _ACK) == _SYN:
            self._end(flow, "forced")   # the 5-tuple is reused by a new connection
            flow = self._new_flow(pkt, key)
        to_server = key == flow.key
        size = len(pkt.raw)
        if to_server:
            flow.pkts_toserver += 1
            flow.bytes_toserver += size
        else:
            flow.pkts_toclient += 1
            flow.bytes_toclient += size
        flow.end = ts
        out = [Inspection(pkt, flow, to_server, {PKT: pkt.payload})]
        if self.config.checksums and not pkt.checksum_ok:
            return out
        proto = pkt.ip_proto
        if proto == 6:
            self._tcp(flow, pkt, to_server, out)
        elif proto == 17:
            if not flow.established and flow.pkts_toserver and flow.pkts_toclient:
                flow.established = True
            if pkt.payload:
                self._app(flow, pkt, pkt.payload, to_server, out, tcp=False)
        elif not flow.established and flow.pkts_toserver and flow.pkts_toclient:
            flow.established = True
        return out

    def _new_flow(self, pkt: Packet, key: tuple) -> Flow:
        rkey = (pkt.dst, pkt.dport, pkt.src, pkt.sport, pkt.ip_proto, pkt.vlan)
        if pkt.ip_proto == 6 and pkt.tcp_flags & (_SYN | _ACK) == _SYN | _ACK:
            key, rkey = rkey, key     # a SYN/ACK comes from the server
        self._count += 1
        # Suricata's flow_id: a non-zero id, stable for the flow, fits a JSON number
        flow_id = (zlib.crc32(repr(key).encode()) << 20) | (self._count & 0xFFFFF) or 1
        src, sport, dst, dport = key[0], key[1], key[2], key[3]
        flow = Flow(flow_id, key, pkt.ts, src, dst, sport, dport, pkt.ip_proto,
                    pkt.ip_version, pkt.vlan)
        self._flows[key] = flow
        self._flows[rkey] = flow
        return flow

    def _tcp(self, flow: Flow, pkt: Packet, to_server: bool, out: list[Inspection]) -> None:
        flags = pkt.tcp_flags
        cfg = self.config
        if to_server:
            flow.tcp_flags_ts |= flags
        else:
            flow.tcp_flags_tc |= flags
        state = flow.tcp_state
        if flags & _RST:
            if flow.app is not None and not flow.closed:
                for side in (True, False):
                    self._outputs(flow, pkt, flow.app.end_of_stream(side), out)
            flow.tcp_state = TCP_CLOSED
            flow.closed = True
            return
        if state == TCP_NONE:
            if flags & _SYN:
                if flags & _ACK:   # picked up at the SYN/ACK: the handshake is half seen
                    flow.tcp_state = TCP_SYN_RECV
                    flow.streams[0] = self._stream(pkt.seq + 1)
                    flow.tracked = cfg.midstream
                else:
                    flow.tcp_state = TCP_SYN_SENT
                    flow.streams[1] = self._stream(pkt.seq + 1)
                    flow.tracked = True
                return
            flow.tcp_state = TCP_ESTABLISHED
            if not cfg.midstream:
                return         # no handshake, no midstream: packets only, as Suricata
            flow.tracked = True
            flow.established = True
        elif state == TCP_SYN_SENT:
            if not to_server and flags & _SYN and flags & _ACK:
                flow.tcp_state = TCP_SYN_RECV
                flow.streams[0] = self._stream(pkt.seq + 1)
            return
        elif state == TCP_SYN_RECV:
            if flags & _SYN:
                return
            if to_server and flags & _ACK and flow.tracked:
                flow.tcp_state = TCP_ESTABLISHED
                flow.established = True
            elif not flow.established:
                return
        if not flow.tracked:
            return
        stream = flow.streams[to_server]
        if stream is None:   # midstream: this side's first packet sets its base
            stream = flow.streams[to_server] = self._stream(pkt.seq)
        payload = pkt.payload
        if payload:
            new = stream.add(pkt.seq, payload)
            if new:
                window = stream.window(new)
                out.append(Inspection(pkt, flow, to_server, {STREAM: window},
                                      stream_new=len(window) - len(new)))
                if flow.app_proto != "failed":
                    self._app(flow, pkt, new, to_server, out, tcp=True)
        if flags & _FIN:
            if flow.app is not None:
                self._outputs(flow, pkt, flow.app.end_of_stream(to_server), out)
            flow.fins |= 1 if to_server else 2
            flow.tcp_state = TCP_CLOSED if flow.fins == 3 else TCP_CLOSING
            flow.closed = flow.fins == 3

    def _stream(self, base: int) -> Stream:
        cfg = self.config
        return Stream(base, cfg.reassembly_depth, cfg.stream_context, cfg.max_ooo_bytes)

    def _app(self, flow: Flow, pkt: Packet, data: bytes, to_server: bool,
             out: list[Inspection], tcp: bool) -> None:
        if flow.app is None:
            if flow.app_proto:
                return
            side = 1 if to_server else 0
            if not tcp:
                probe = data
            else:
                probe = flow.probe[side] = (flow.probe[side] + data)[:_PROBE_LIMIT]
            found = appdetect.detect(probe, to_server, tcp)
            if not found:
                if found == "" or len(probe) >= _PROBE_LIMIT:
                    flow.probe_failed[side] = True
                    if to_server or flow.probe_failed[1]:
                        flow.app_proto = "failed"
                        flow.probe = [b"", b""]
                return
            flow.app_proto = found
            flow.app = self._parser(found, tcp)
            data = probe
            # the other direction's bytes seen before detection belong to the protocol too
            other = flow.probe[1 - side]
            flow.probe = [b"", b""]
            if other:
                self._outputs(flow, pkt, flow.app.feed(other, not to_server), out)
        self._outputs(flow, pkt, flow.app.feed(data, to_server), out)

    def _parser(self, proto: str, tcp: bool) -> DnsParser | HttpParser | TlsParser:
        if proto == "http":
            return HttpParser(self.config.request_body_limit, self.config.response_body_limit)
        if proto == "tls":
            return TlsParser()
        return DnsParser(tcp)

    def _outputs(self, flow: Flow, pkt: Packet | None, outputs: list[AppOutput],
                 out: list[Inspection] | None) -> None:
        for o in outputs:
            if o.buffers is not None and out is not None and pkt is not None:
                out.append(Inspection(pkt, flow, o.to_server, o.buffers, o.tx_id))
            if o.record is not None:
                self._events.append(AppEvent(flow, flow.app_proto, o.tx_id, o.to_server, pkt,
                                             o.record))

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + _SWEEP_EVERY
        timeouts = self.config.timeouts
        for key, flow in list(self._flows.items()):
            if key is not flow.key:
                continue
            table = timeouts.get({6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}.get(
                flow.proto, "default"), timeouts["default"])
            limit = table[flow.state]
            if now - flow.end > limit:
                self._end(flow, "timeout")

    def _end(self, flow: Flow, reason: str) -> None:
        flow.reason = reason
        if flow.app is not None:
            self._outputs(flow, None, flow.app.finish(), None)
        del self._flows[flow.key]
        self._flows.pop((flow.dst, flow.dport, flow.src, flow.sport, flow.proto, flow.vlan),
                        None)
        self._events.append(FlowEnd(flow))
