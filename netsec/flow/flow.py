"""One flow: the detector's `FlowView` plus what EVE `flow` events report."""
from __future__ import annotations

from typing import Any

from netsec.app import AppParser
from netsec.flow.stream import Stream

# The table key: (src, sport, dst, dport, ip_proto, vlan ids), one per direction.
FlowKey = tuple[str, int, str, int, int, tuple[int, ...]]

# TCP tracking states (Suricata's flow.tcp.state names where EVE shows them)
TCP_NONE, TCP_SYN_SENT, TCP_SYN_RECV, TCP_ESTABLISHED, TCP_CLOSING, TCP_CLOSED = range(6)
_TCP_STATE_NAMES = ("none", "syn_sent", "syn_recv", "established", "closing", "closed")


class Flow:
    __slots__ = (
        "flow_id", "app_proto", "established", "flowbits", "detect_state",
        "key", "src", "dst", "sport", "dport", "proto", "ip_version", "vlan",
        "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient",
        "start", "end", "reason", "alerted", "tcp_state", "tcp_flags_ts", "tcp_flags_tc",
        "fins", "streams", "tracked", "app", "probe", "probe_failed", "closed", "four_whs",
    )

    def __init__(self, flow_id: int, key: FlowKey, pkt_ts: float, src: str, dst: str,
                 sport: int, dport: int, proto: int, ip_version: int,
                 vlan: tuple[int, ...]) -> None:
        self.flow_id = flow_id
        self.app_proto = ""
        self.established = False
        self.flowbits: set[str] = set()
        self.detect_state: dict[str, Any] = {}
        self.key = key                 # the table key in the client-to-server direction
        self.src = src                 # the initiator (client)
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.proto = proto
        self.ip_version = ip_version
        self.vlan = vlan
        self.pkts_toserver = 0
        self.pkts_toclient = 0
        self.bytes_toserver = 0
        self.bytes_toclient = 0
        self.start = pkt_ts
        self.end = pkt_ts              # time of the last packet
        self.reason = ""               # why it ended: "timeout" or "shutdown"
        self.alerted = False           # set by the engine when a rule alerted on the flow
        self.tcp_state = TCP_NONE
        self.tcp_flags_ts = 0          # TCP flags seen to server / to client
        self.tcp_flags_tc = 0
        self.fins = 0                  # bit 1 client FIN seen, bit 2 server FIN seen
        # (to_client, to_server) reassembly; None until that side's sequence base is known
        self.streams: list[Stream | None] = [None, None]
        self.tracked = False           # TCP: handshake seen, or midstream pickup allowed
        self.app: AppParser | None = None
        self.probe = [b"", b""]        # first bytes per direction while the protocol is unknown
        self.probe_failed = [False, False]
        self.closed = False            # TCP: RST, or FIN both ways
        self.four_whs = False          # TCP: the server answered the SYN with a SYN (split
                                       # handshake): the server's ACK completes it

    def past_depth(self, to_server: bool) -> bool:
        """True once reassembly in that direction reached the depth (nothing more to inspect)."""
        stream = self.streams[to_server]
        return stream is not None and stream.past_depth

    @property
    def state(self) -> str:
        """EVE's flow.state: new, established or closed."""
        if self.closed:
            return "closed"
        return "established" if self.established else "new"

    @property
    def proto_name(self) -> str:
        return {6: "TCP", 17: "UDP", 1: "ICMP", 58: "IPv6-ICMP"}.get(self.proto, str(self.proto))

    @property
    def tcp_state_name(self) -> str:
        return _TCP_STATE_NAMES[self.tcp_state]

    def eve_flow(self) -> dict[str, Any]:
        """The body of an EVE `flow` event's "flow" object (timestamps as epoch floats;
        the engine formats them as Suricata does)."""
        return {
            "pkts_toserver": self.pkts_toserver, "pkts_toclient": self.pkts_toclient,
            "bytes_toserver": self.bytes_toserver, "bytes_toclient": self.bytes_toclient,
            "start": self.start, "end": self.end, "age": int(self.end - self.start),
            "state": self.state, "reason": self.reason, "alerted": self.alerted,
        }

    def eve_tcp(self) -> dict[str, Any]:
        """The body of an EVE `flow` event's "tcp" object (flags in hex, as Suricata)."""
        return {
            "tcp_flags": f"{self.tcp_flags_ts | self.tcp_flags_tc:02x}",
            "tcp_flags_ts": f"{self.tcp_flags_ts:02x}",
            "tcp_flags_tc": f"{self.tcp_flags_tc:02x}",
            "state": self.tcp_state_name,
        }
