"""decode-event and stream-event: match the anomalies decoders and the stream engine
raised on the packet (`Packet.events`), by Suricata's event names.

`decode-event:ipv4.frag_overlap;` matches a packet whose events hold "ipv4.frag_overlap";
`stream-event:reassembly_overlap_different_data;` one holding
"stream.reassembly_overlap_different_data". As Suricata (DetectEngineEventSetup), a name
not in its event table is a rule error, so a typo cannot load as a rule that never fires.
The tables below are Suricata's (src/decode-events.c), which its rules/decoder-events.rules
and rules/stream-events.rules use, plus `stream.reassembly_ooo_limit_reached`, this engine's
own (netsec.flow's bound on out-of-order bytes, which Suricata's memcaps play). Stream rules
may still spell two names `..._with_different_ack`, which Suricata's DetectStreamEventSetup
maps to the table's `..._with_diff_ack`; so does this.

Suricata 7 has no urgent-data event: it keeps a segment's urgent byte in the stream, as a
receiver with SO_OOBINLINE would, and rules look for urgent data with `flags:U+`.
"""
from __future__ import annotations

from netsec.inspection import Inspection
from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder, Setup

_URL = DOCS + "decode-layer.html"


def _names(text: str) -> frozenset[str]:
    """`layer: a b` (continued on indented lines) to {"layer.a", "layer.b"}; a line
    without a layer holds bare names."""
    out: set[str] = set()
    prefix = ""
    for line in text.strip("\n").splitlines():
        if not line[:1].isspace():
            layer, sep, line = line.partition(":")
            prefix, line = (layer + ".", line) if sep else ("", layer)
        out.update(prefix + n for n in line.split())
    return frozenset(out)


DECODE_EVENTS = _names("""
ipv4: pkt_too_small hlen_too_small iplen_smaller_than_hlen trunc_pkt opt_invalid
 opt_invalid_len opt_malformed opt_pad_required opt_eol_required opt_duplicate opt_unknown
 wrong_ip_version icmpv6 frag_pkt_too_large frag_overlap frag_ignored
icmpv4: pkt_too_small unknown_type unknown_code ipv4_trunc_pkt ipv4_unknown_ver
icmpv6: unknown_type unknown_code pkt_too_small ipv6_unknown_version ipv6_trunc_pkt
 mld_message_with_invalid_hl unassigned_type experimentation_type
ipv6: pkt_too_small trunc_pkt trunc_exthdr exthdr_dupl_fh exthdr_useless_fh exthdr_dupl_rh
 exthdr_dupl_hh exthdr_dupl_dh exthdr_dupl_ah exthdr_dupl_eh exthdr_invalid_optlen
 wrong_ip_version exthdr_ah_res_not_null hopopts_unknown_opt hopopts_only_padding
 dstopts_unknown_opt dstopts_only_padding rh_type_0 zero_len_padn fh_non_zero_reserved_field
 data_after_none_header unknown_next_header icmpv4 frag_pkt_too_large frag_overlap
 frag_invalid_length frag_ignored ipv4_in_ipv6_too_small ipv4_in_ipv6_wrong_version
 ipv6_in_ipv6_too_small ipv6_in_ipv6_wrong_version
tcp: pkt_too_small hlen_too_small invalid_optlen opt_invalid_len opt_duplicate
udp: pkt_too_small hlen_too_small hlen_invalid
sll: pkt_too_small
ethernet: pkt_too_small
ppp: pkt_too_small vju_pkt_too_small ip4_pkt_too_small ip6_pkt_too_small wrong_type
 unsup_proto
pppoe: pkt_too_small wrong_code malformed_tags
gre: pkt_too_small wrong_version version0_recur version0_flags version0_hdr_too_big
 version0_malformed_sre_hdr version1_chksum version1_route version1_ssr version1_recur
 version1_flags version1_no_key version1_wrong_protocol version1_malformed_sre_hdr
 version1_hdr_too_big
vlan: header_too_small unknown_type too_many_layers
ieee8021ah: header_too_small
vntag: header_too_small unknown_type
ipraw: invalid_ip_version
ltnull: pkt_too_small unsupported_type
sctp: pkt_too_small
esp: pkt_too_small
mpls: header_too_small pkt_too_small bad_label_router_alert bad_label_implicit_null
 bad_label_reserved unknown_payload_type
vxlan: unknown_payload_type
geneve: unknown_payload_type
erspan: header_too_small unsupported_version too_many_vlan_layers
dce: pkt_too_small
chdlc: pkt_too_small
nsh: header_too_small unsupported_version bad_header_length reserved_type unsupported_type
 unknown_payload
too_many_layers
""")

STREAM_EVENTS = _names("""
stream: 3whs_ack_in_wrong_dir 3whs_async_wrong_seq 3whs_right_seq_wrong_ack_evasion
 3whs_synack_in_wrong_direction 3whs_synack_resend_with_diff_ack
 3whs_synack_resend_with_diff_seq 3whs_synack_toserver_on_syn_recv 3whs_synack_with_wrong_ack
 3whs_synack_flood 3whs_synack_tfo_data_ignored 3whs_syn_resend_diff_seq_on_syn_recv
 3whs_syn_toclient_on_syn_recv 3whs_wrong_seq_wrong_ack 3whs_ack_data_inject
 4whs_synack_with_wrong_ack 4whs_synack_with_wrong_syn 4whs_wrong_seq 4whs_invalid_ack
 closewait_ack_out_of_window closewait_fin_out_of_window closewait_pkt_before_last_ack
 closewait_invalid_ack closing_ack_wrong_seq closing_invalid_ack est_packet_out_of_window
 est_pkt_before_last_ack est_synack_resend est_synack_resend_with_diff_ack
 est_synack_resend_with_diff_seq est_synack_toserver est_syn_resend est_syn_resend_diff_seq
 est_syn_toclient est_invalid_ack fin_invalid_ack fin1_ack_wrong_seq fin1_fin_wrong_seq
 fin1_invalid_ack fin2_ack_wrong_seq fin2_fin_wrong_seq fin2_invalid_ack fin_but_no_session
 fin_out_of_window fin_syn lastack_ack_wrong_seq lastack_invalid_ack rst_but_no_session
 timewait_ack_wrong_seq timewait_invalid_ack shutdown_syn_resend pkt_invalid_timestamp
 pkt_invalid_ack pkt_broken_ack rst_invalid_ack pkt_retransmission
 pkt_spurious_retransmission pkt_bad_window_update suspected_rst_inject wrong_thread
 reassembly_segment_before_base_seq reassembly_no_segment reassembly_seq_gap
 reassembly_overlap_different_data reassembly_depth_reached reassembly_ooo_limit_reached
""")

# The spellings of stream-events.rules to the table's (Suricata's DetectStreamEventSetup).
_ALIASES = {
    "stream.3whs_synack_resend_with_different_ack": "stream.3whs_synack_resend_with_diff_ack",
    "stream.est_synack_resend_with_different_ack": "stream.est_synack_resend_with_diff_ack",
}


def _event_setup(keyword: str, prefix: str, table: frozenset[str]) -> Setup:
    def setup(b: Builder, value: str | None) -> None:
        raw = (value or "").strip().lower()
        # Packet.events holds decoder names without Suricata's "decoder." prefix.
        event = (raw if raw.startswith(prefix) else prefix + raw).removeprefix("decoder.")
        event = _ALIASES.get(event, event)
        if event not in table:
            raise RuleError(f"{keyword}: unknown event {raw!r}")

        def check(ins: Inspection) -> bool:
            return event in ins.packet.events
        b.checks.append(check)
    return setup


KEYWORDS = (
    Keyword("decode-event", _event_setup("decode-event", "decoder.", DECODE_EVENTS),
            "the packet raised this decoder event", _URL + "#decode-event"),
    Keyword("stream-event", _event_setup("stream-event", "stream.", STREAM_EVENTS),
            "the packet raised this TCP stream event", _URL + "#stream-event"),
)
