"""Flows, TCP reassembly and app-layer dispatch: packets in, Inspections and EVE records out.

Use (the engine's loop)::

    table = FlowTable(FlowConfig(midstream=..., inline=..., checksums=...))
    for pkt in read_packets(path):
        for ins in table.process(pkt):      # packet, then stream, then app-layer steps
            detector.run(ins)
        for ev in table.drain_events():     # FlowEnd / AppEvent records for EVE
            ...
    for ev in table.flush():                # end of capture: every flow ends ("shutdown")
        ...

`process(pkt)` returns, in order:

1. always one packet inspection: buffers `{"pkt": payload}`; `flow` is None only for
   frames without IP;
2. TCP, when reassembly advanced in the packet's direction: one inspection with buffer
   `stream` = up to `FlowConfig.stream_context` (2048) bytes that preceded the new data in
   that direction, then the new in-order data (a sliding window, so a content split across
   segments is found; absolute stream offsets are not preserved); `Inspection.stream_new`
   is where the new bytes start, so the detector can skip matches wholly in the context.
   Data is inspected as soon as it is in order, in IDS and inline mode alike. Nothing past
   `reassembly_depth` (1 MiB) is inspected; `flow.past_depth(to_server)` says when a
   direction reached it (for the inline bypass);
3. app-layer inspections (`tx_id` set) with the parsers' sticky buffers: HTTP request and
   response headers, then bodies as they arrive (one inspection per packet bringing new
   body bytes, a `netsec.inspection.Window` placed in the body); DNS messages
   (`dns.query`); TLS ClientHello, ServerHello, Certificate. Parsers get every byte of the
   reassembled stream in order, in both directions (the bytes held while the protocol was
   being detected included). See `netsec.app.http`, `.dns`, `.tls` for exactly when.

Anomalies go to `pkt.events` (the engine logs them as EVE `anomaly` events): the limits of
`FlowConfig` (`netsec.flow.config.LIMIT_EVENTS`) and Suricata's stream events for
overlapping segments with different data and for odd or split handshakes (a SYN answered
by a SYN is followed as Suricata's four-way handshake).

TCP: a flow is `established` after the three-way handshake. A flow picked up without a SYN
is tracked (reassembled, app-layer parsed, `established`) only with `midstream=True`;
otherwise only packet inspections happen, as Suricata does. Packets with a bad checksum
(with `checksums=True`) get a packet inspection but do not reach reassembly or app-layer.
App protocol detection is by content: see `netsec.flow.protodetect`.

EVE: `drain_events()` returns what happened since the last call, in order:

- `FlowEnd(flow)` when a flow ends (timeout per protocol and state, from
  `FlowConfig.timeouts`, measured in capture time; "forced" when a SYN reuses the 5-tuple
  of a closed TCP flow; "shutdown" at `flush()`).
  `flow.eve_flow()` is the `flow` object (pkts/bytes toserver/toclient, start, end, age,
  state, reason, alerted); `flow.eve_tcp()` the `tcp` object; the 5-tuple of the
  initiator is `flow.src`, `flow.sport`, `flow.dst`, `flow.dport`, `flow.proto_name`,
  plus `flow.flow_id`, `flow.app_proto`, `flow.vlan`. The engine sets `flow.alerted`.
- `AppEvent(flow, proto, tx_id, to_server, packet, record)`: `record` is the object to put
  under `proto` ("dns", "http" or "tls") in an EVE event; `packet` the packet that
  completed it (None when it was logged at flow end).
"""
from netsec.flow.config import FlowConfig
from netsec.flow.flow import Flow
from netsec.flow.table import AppEvent, FlowEnd, FlowTable

__all__ = ["AppEvent", "Flow", "FlowConfig", "FlowEnd", "FlowTable"]
