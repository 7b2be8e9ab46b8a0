"""The flow table: packets in, Inspections out, plus EVE records for ended flows and
application transactions. See `netsec.flow` for the contract."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from netsec import files as _files
from netsec.app import AppOutput, AppParser
from netsec.app.dns import DnsParser
from netsec.app.htp import parser_class as http_parser
from netsec.app.tls import TlsParser
from netsec.flow import protodetect as appdetect
from netsec.flow.config import FlowConfig
from netsec.flow.flow import (
    TCP_CLOSED,
    TCP_CLOSING,
    TCP_ESTABLISHED,
    TCP_NONE,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    Flow,
    FlowKey,
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
    record: dict[str, Any]          # the EVE object under `proto`


@dataclass(slots=True)
class FileEvent:
    """A file left OPEN (closed, truncated or in error): the data of an EVE `fileinfo`
    event, and what the scanner in flight is handed."""
    flow: Flow
    file: _files.File
    packet: Packet | None  # the packet that completed it (None when it ended with the flow)
    http: dict[str, Any] | None    # the transaction's EVE http object, as far as known


class FlowTable:
    def __init__(self, config: FlowConfig | None = None) -> None:
        self.config = config or FlowConfig()
        # chosen (libhtp loaded) now: a binding that cannot be had fails here, not a flow
        self._http = http_parser(self.config.http_parser)
        self._flows: dict[FlowKey, Flow] = {}   # both directions' keys -> flow
        self._count = 0
        self._next_sweep = 0.0
        self._events: list[FlowEnd | AppEvent | FileEvent] = []
        self.files_wanted = False   # a loaded rule uses a file keyword (want_files)
        # Files keep their data for a scanner (ipsd's hold); the keywords and EVE need
        # only the hashes and the head libmagic reads.
        self.file_data = False

    def want_files(self, wanted: bool) -> None:
        """Whether the rules use files; with `file_tracking` None, flows that start from now
        on track them or not (a flow keeps what it started with)."""
        self.files_wanted = wanted

    @property
    def tracks_files(self) -> bool:
        cfg = self.config
        on = self.files_wanted if cfg.file_tracking is None else cfg.file_tracking
        return bool(on and cfg.file_max_size)

    def __len__(self) -> int:
        return len(self._flows) // 2

    def drain_events(self) -> list[FlowEnd | AppEvent | FileEvent]:
        """The EVE records produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def flush(self) -> list[FlowEnd | AppEvent | FileEvent]:
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

    def _new_flow(self, pkt: Packet, key: FlowKey) -> Flow:
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
        if to_server:
            flow.tcp_flags_ts |= flags
        else:
            flow.tcp_flags_tc |= flags
        if flags & _RST:
            if flow.app is not None and not flow.closed:
                for side in (True, False):
                    self._outputs(flow, pkt, flow.app.end_of_stream(side), out)
            flow.tcp_state = TCP_CLOSED
            flow.closed = True
            return
        if flow.tcp_state != TCP_ESTABLISHED or flags & _SYN:
            if not self._handshake(flow, pkt, to_server, flags):
                return
        if not flow.tracked:
            return
        stream = flow.streams[to_server]
        if stream is None:   # midstream: this side's first packet sets its base
            stream = flow.streams[to_server] = self._stream(pkt.seq)
        payload = pkt.payload
        if payload:
            new = stream.add(pkt.seq, payload, pkt.events)
            if new:
                window = stream.window()
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

    def _handshake(self, flow: Flow, pkt: Packet, to_server: bool, flags: int) -> bool:
        """The TCP state machine up to ESTABLISHED, and SYNs after it; True when the packet
        goes on to reassembly. Odd and split handshakes raise Suricata's stream events
        (rules/stream-events.rules) in `pkt.events`; the packets they name are not
        reassembled, as Suricata does not accept them into the session."""
        cfg = self.config
        state = flow.tcp_state
        syn, ack = flags & _SYN, flags & _ACK
        events = pkt.events
        client, server = flow.streams[1], flow.streams[0]
        if state == TCP_NONE:
            if syn:
                if ack:   # picked up at the SYN/ACK: the handshake is half seen
                    flow.tcp_state = TCP_SYN_RECV
                    flow.streams[0] = self._stream(pkt.seq + 1)
                    flow.tracked = cfg.midstream
                else:
                    flow.tcp_state = TCP_SYN_SENT
                    flow.streams[1] = self._stream(pkt.seq + 1)
                    flow.tracked = True
                return False
            flow.tcp_state = TCP_ESTABLISHED
            if not cfg.midstream:
                return False   # no handshake, no midstream: packets only, as Suricata
            flow.tracked = True
            flow.established = True
            return True
        if state == TCP_SYN_SENT:
            if syn and ack:
                if to_server and flow.four_whs:   # the client answers the server's SYN
                    if server is not None and pkt.ack != server.base:
                        events.append("stream.4whs_synack_with_wrong_ack")
                    else:
                        flow.tcp_state = TCP_SYN_RECV
                elif to_server:
                    events.append("stream.3whs_synack_in_wrong_direction")
                elif client is not None and pkt.ack != client.base:
                    events.append("stream.3whs_synack_with_wrong_ack")
                else:
                    flow.tcp_state = TCP_SYN_RECV
                    flow.streams[0] = self._stream(pkt.seq + 1)
                    flow.four_whs = False
            elif syn and not to_server:
                # The server answers a SYN with a SYN: a split (four-way) handshake, which
                # Suricata follows (STREAMTCP_FLAG_4WHS) so it cannot be used to evade.
                flow.four_whs = True
                flow.streams[0] = self._stream(pkt.seq + 1)
            return False
        if state == TCP_SYN_RECV:
            if syn:
                if not to_server and not ack:
                    events.append("stream.3whs_syn_toclient_on_syn_recv")
                elif to_server and ack and not flow.four_whs:
                    events.append("stream.3whs_synack_toserver_on_syn_recv")
                elif to_server and not ack and client is not None \
                        and (pkt.seq + 1) & 0xFFFFFFFF != client.base:
                    events.append("stream.3whs_syn_resend_diff_seq_on_syn_recv")
                elif not to_server and server is not None \
                        and (pkt.seq + 1) & 0xFFFFFFFF != server.base:
                    events.append("stream.3whs_synack_resend_with_diff_seq")
                return False
            # the ACK completing the handshake: the client's, or the server's in a 4WHS
            if ack and to_server != flow.four_whs and flow.tracked:
                peer = server if to_server else client
                if peer is not None and pkt.ack != peer.base:
                    events.append("stream.4whs_invalid_ack" if flow.four_whs
                                  else "stream.3whs_wrong_seq_wrong_ack")
                    return False
                flow.tcp_state = TCP_ESTABLISHED
                flow.established = True
                return True
            if ack and not flow.four_whs and not flow.established and flow.tracked:
                events.append("stream.3whs_ack_in_wrong_dir")
            return flow.established
        if syn:   # a SYN on an established (or closing) connection is never data
            if to_server:
                resend = not ack and client is not None \
                    and (pkt.seq + 1) & 0xFFFFFFFF == client.base
                events.append("stream.est_synack_toserver" if ack
                              else "stream.est_syn_resend" if resend
                              else "stream.est_syn_resend_diff_seq")
            elif ack:
                resend = server is not None and (pkt.seq + 1) & 0xFFFFFFFF == server.base
                events.append("stream.est_synack_resend" if resend
                              else "stream.est_synack_resend_with_diff_seq")
            else:
                events.append("stream.est_syn_toclient")
            return False
        return True

    def _stream(self, base: int) -> Stream:
        cfg = self.config
        return Stream(base, cfg.reassembly_depth, cfg.stream_context, cfg.max_ooo_bytes)

    def _app(self, flow: Flow, pkt: Packet, data: bytes, to_server: bool,
             out: list[Inspection], tcp: bool) -> None:
        if flow.app is None:
            if flow.app_proto:
                return
            side = 1 if to_server else 0
            if flow.probe_failed[side]:
                return   # not a protocol we know in this direction: wait for the other
            # The bytes seen before detection are kept whole (fewer than _PROBE_LIMIT, or
            # detection gives up), so the parser gets every byte of the stream in order.
            if tcp and flow.probe[side]:
                data = flow.probe[side] + data
            found = appdetect.detect(data[:_PROBE_LIMIT], to_server, tcp)
            if not found:
                if found == "" or len(data) >= _PROBE_LIMIT:
                    flow.probe_failed[side] = True
                    if to_server or flow.probe_failed[1]:
                        flow.app_proto = "failed"
                    flow.probe = [b"", b""] if to_server else [b"", flow.probe[1]]
                elif tcp:
                    flow.probe[side] = data
                return
            flow.app_proto = found
            flow.app = self._parser(found, tcp)
            # the other direction's bytes seen before detection belong to the protocol too
            other = flow.probe[1 - side]
            flow.probe = [b"", b""]
            if other:
                self._outputs(flow, pkt, flow.app.feed(other, not to_server), out)
        self._outputs(flow, pkt, flow.app.feed(data, to_server), out)

    def _parser(self, proto: str, tcp: bool) -> AppParser:
        cfg = self.config
        if proto == "http":
            files = _files.FileTracker(cfg.file_max_size, self.file_data) \
                if self.tracks_files else None
            return self._http(cfg.request_body_limit, cfg.response_body_limit,
                              cfg.body_context, cfg.http_field_limit, cfg.http_header_limit,
                              files)
        if proto == "tls":
            return TlsParser(cfg.tls_record_limit, cfg.tls_handshake_limit)
        return DnsParser(tcp)

    def _outputs(self, flow: Flow, pkt: Packet | None, outputs: list[AppOutput],
                 out: list[Inspection] | None) -> None:
        app = flow.app
        if app is not None and app.events:
            if pkt is not None:
                pkt.events.extend(app.events)
            app.events.clear()
        for o in outputs:
            if o.buffers is not None and out is not None and pkt is not None:
                out.append(Inspection(pkt, flow, o.to_server, o.buffers, o.tx_id))
            if o.record is not None:
                self._events.append(AppEvent(flow, flow.app_proto, o.tx_id, o.to_server, pkt,
                                             o.record))
        files = getattr(app, "files", None)
        if files is not None:
            self._files(flow, pkt, files, outputs, out)

    def _files(self, flow: Flow, pkt: Packet | None, files: _files.FileTracker,
               outputs: list[AppOutput], out: list[Inspection] | None) -> None:
        app = flow.app
        for f in files.take():
            http = next((o.record for o in outputs if o.record is not None
                         and o.tx_id == f.tx_id), None)
            if http is None and app is not None and hasattr(app, "tx_record"):
                http = app.tx_record(f.tx_id)
            self._events.append(FileEvent(flow, f, pkt, http))
            if out is not None and pkt is not None:
                # the file keywords' inspection, on the packet that ended the file
                out.append(Inspection(pkt, flow, f.to_server,
                                      {_files.FILE_NAME: f.name.encode()}, f.tx_id, file=f))
        # A file still arriving is read past the stream depth, up to the file size cap
        # (plus room for chunk framing): its end is what a scanner needs to see.
        for f in files.open_files.values():
            stream = flow.streams[f.to_server]
            if stream is not None and stream.depth and not stream.past_depth:
                want = stream.next + files.max_size - f.size + 65536
                stream.depth = max(stream.depth, want)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + _SWEEP_EVERY
        timeouts = self.config.timeouts
        for key, flow in list(self._flows.items()):
            if key != flow.key:   # an alias (==, not `is`: compiled code re-boxes tuples)
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
