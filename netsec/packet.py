"""A decoded packet: the one shape the decoders fill and the detection engine reads.

Fields are plain attributes (slots) because the datapath touches them millions of times;
decoders set what the packet carries and leave the defaults for the rest.
"""
from __future__ import annotations


class Packet:
    __slots__ = (
        "ts", "pcap_cnt", "linktype", "raw", "vlan",
        "ip_version", "src", "dst", "ip_proto", "ttl", "ip_id", "ip_len", "frag", "no_l4",
        "sport", "dport", "tcp_flags", "seq", "ack", "window",
        "icmp_type", "icmp_code", "payload", "checksum_ok", "events",
    )

    def __init__(self, ts: float = 0.0, pcap_cnt: int = 0, raw: bytes = b"") -> None:
        self.ts = ts                  # capture time, seconds since the epoch
        self.pcap_cnt = pcap_cnt      # 1-based position in the capture (EVE's pcap_cnt)
        self.linktype = 1             # DLT of the frame (1 Ethernet, 113 SLL, 101/12 raw IP)
        self.raw = raw                # the whole frame as captured
        self.vlan: tuple[int, ...] = ()  # VLAN ids, outermost first
        self.ip_version = 0           # 4 or 6; 0 when the frame carries no IP
        self.src = ""                 # addresses as text, as EVE prints them
        self.dst = ""
        self.ip_proto = 0             # IPv4 protocol / IPv6 next header after extensions
        self.ttl = 0                  # IPv4 TTL or IPv6 hop limit
        self.ip_id = 0
        self.ip_len = 0               # length of the IP datagram (after reassembly)
        self.frag = False             # True when this packet was rebuilt from fragments
        # No usable L4 header: a fragment on its own (given back for its anomaly), or a
        # TCP/UDP/ICMP header that did not decode. No flow then, and only protocol-less rules
        # (`ip`, `pkthdr`) see it, as Suricata sets no p->proto for such a packet.
        self.no_l4 = False
        self.sport = 0                # TCP/UDP ports; 0 for other protocols
        self.dport = 0
        # FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80
        self.tcp_flags = 0
        self.seq = 0
        self.ack = 0
        self.window = 0
        self.icmp_type: int | None = None  # ICMP or ICMPv6 type/code; None for other protocols
        self.icmp_code: int | None = None
        self.payload = b""            # the L4 payload (what `content` without a buffer sees)
        self.checksum_ok = True       # False when validation is on and a checksum is wrong
        self.events: list[str] = []   # decoder anomalies, Suricata's names ("ipv4.trunc_pkt")

    @property
    def proto_name(self) -> str:
        """The protocol as EVE's `proto` field names it."""
        return _PROTO_NAMES.get(self.ip_proto, str(self.ip_proto))

    def __repr__(self) -> str:
        return (f"Packet(#{self.pcap_cnt} {self.proto_name} {self.src}:{self.sport} -> "
                f"{self.dst}:{self.dport} len={len(self.payload)})")


_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP", 47: "GRE", 132: "SCTP"}
