"""EVE records carry Suricata's field names and formats exactly."""
from __future__ import annotations

import io
import json

from netsec import eve
from tests.ids_fakes import packet


def test_timestamp_format() -> None:
    assert eve.timestamp(1704164645.123456) == "2024-01-02T03:04:05.123456+0000"


def test_alert_record_field_names_and_order() -> None:
    ev = eve.alert(packet(5, b"x"), action="allowed", gid=1, sid=2, rev=3, msg="m",
                   category="c", severity=2, metadata={"k": ["v"]}, flow_id=77,
                   app_proto="http", to_server=True, tx_id=0)
    assert list(ev) == ["timestamp", "flow_id", "pcap_cnt", "event_type", "src_ip",
                        "src_port", "dest_ip", "dest_port", "proto", "app_proto",
                        "direction", "tx_id", "alert"]
    assert ev["proto"] == "TCP" and ev["direction"] == "to_server"
    assert list(ev["alert"]) == ["action", "gid", "signature_id", "rev", "signature",
                                 "category", "severity", "metadata"]


def test_an_alert_no_packet_raised_has_the_alert_head_and_says_what_it_concerns() -> None:
    """sys-sec's controller logs its DNS blocks this way; evelog and the report read them."""
    ev = eve.alert_at(1704164645.5, src_ip="10.137.0.3", dest_ip="10.137.255.254",
                      proto="UDP", action="blocked", signature="hyperwall adult: x.example",
                      category="adult", severity=3, hyperwall={"guest": "family"})
    assert json.dumps(ev, separators=(",", ":")) == (
        '{"timestamp":"2024-01-02T03:04:05.500000+0000","event_type":"alert",'
        '"src_ip":"10.137.0.3","dest_ip":"10.137.255.254","proto":"UDP",'
        '"alert":{"action":"blocked","signature_id":0,"signature":"hyperwall adult: x.example",'
        '"category":"adult","severity":3},"hyperwall":{"guest":"family"}}')


def test_icmp_has_no_ports_and_drop_has_tcp_flags() -> None:
    p = packet(1, proto=1)
    p.icmp_type, p.icmp_code = 8, 0
    ev = eve.base("alert", p)
    assert "src_port" not in ev and ev["proto"] == "ICMP" and ev["icmp_type"] == 8
    d = eve.drop(packet(2, b"abc"))["drop"]
    assert d["len"] == 43 and d["ack"] is True and d["psh"] is True and d["syn"] is False


def test_writer_writes_one_object_per_line() -> None:
    out = io.StringIO()
    w = eve.EveWriter(out)
    w.write({"event_type": "a"})
    w.write({"event_type": "b"})
    assert [json.loads(line)["event_type"] for line in out.getvalue().splitlines()] == ["a", "b"]
    assert w.count == 2
