"""sys-sec's SecurityService over a real Unix socket, on EVE logs written here."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from domains.syssec.security_service import serve
from proto.gen.hyperwall.netsec.v1 import security_pb2 as pb
from proto.gen.hyperwall.netsec.v1 import security_pb2_grpc as pb_grpc


def alert(ts: str, guest: str, sid: int, action: str = "blocked") -> dict:
    return {"timestamp": ts, "event_type": "alert", "src_ip": "10.137.0.3", "src_port": 4000,
            "dest_ip": "203.0.113.10", "dest_port": 80, "hyperwall": {"guest": guest},
            "alert": {"action": action, "signature_id": sid, "signature": f"rule {sid}"}}


def append(path: Path, *records: dict) -> None:
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[tuple[pb_grpc.SecurityServiceStub, Path]]:
    logs = tmp_path / "log"
    logs.mkdir()
    append(logs / "eve.json", alert("2026-11-24T10:00:02.000000+0000", "family", 2),
           {"timestamp": "2026-11-24T10:00:03.000000+0000", "event_type": "flow",
            "hyperwall": {"guest": "family"}}, alert("2026-11-24T10:00:04.000000+0000",
                                                   "work", 4))
    with open(logs / "eve.json", "a") as f:
        f.write("{torn line\n")
    append(logs / "dns.json", alert("2026-11-24T10:00:01.000000+0000", "family", 0))
    server = await serve(logs, tmp_path / "security.sock")
    channel = grpc.aio.insecure_channel(f"unix:{tmp_path / 'security.sock'}")
    try:
        yield pb_grpc.SecurityServiceStub(channel), logs
    finally:
        await channel.close()
        await server.stop(None)


async def test_alerts_come_in_time_order_filtered_by_domain(stub: tuple) -> None:
    s, _ = stub
    got = [(a.domain, a.signature_id) async for a in s.StreamAlerts(pb.StreamAlertsRequest())]
    assert got == [("family", 0), ("family", 2), ("work", 4)]
    got = [a async for a in s.StreamAlerts(pb.StreamAlertsRequest(domain="family"))]
    assert [a.signature_id for a in got] == [0, 2]
    assert got[1].src == "10.137.0.3:4000" and json.loads(got[1].eve_json)["alert"]["action"] \
        == "blocked"
    got = [a async for a in s.StreamAlerts(pb.StreamAlertsRequest(
        since="2026-11-24T10:00:03"))]
    assert [a.signature_id for a in got] == [4]


async def test_a_bad_since_is_invalid_argument(stub: tuple) -> None:
    s, _ = stub
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in s.StreamAlerts(pb.StreamAlertsRequest(since="yesterday-ish")):
            pass
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "since" in (e.value.details() or "")


async def test_follow_delivers_alerts_logged_later(stub: tuple) -> None:
    s, logs = stub
    call = s.StreamAlerts(pb.StreamAlertsRequest(domain="work", follow=True))
    first = await asyncio.wait_for(call.read(), 5)
    assert first.signature_id == 4
    append(logs / "eve.json", alert("2026-11-24T10:00:05.000000+0000", "family", 5),
           alert("2026-11-24T10:00:06.000000+0000", "work", 6))
    nxt = await asyncio.wait_for(call.read(), 5)
    assert nxt.signature_id == 6
    call.cancel()


async def test_events_for_the_report(stub: tuple) -> None:
    s, _ = stub
    got = [json.loads(r.eve_json)["event_type"]
           async for r in s.StreamEvents(pb.StreamEventsRequest(domain="family"))]
    assert sorted(got) == ["alert", "alert", "flow"]


async def test_drops_come_only_when_asked_with_the_key_fields(stub: tuple) -> None:
    s, logs = stub
    append(logs / "eve.json", {"timestamp": "2026-11-24T10:00:07.000000+0000",
                               "event_type": "drop", "src_ip": "203.0.113.10", "src_port": 80,
                               "dest_ip": "10.137.0.3", "dest_port": 4000, "proto": "TCP",
                               "flow_id": 77, "hyperwall": {"domain": "family"}})
    plain = [a.event_type async for a in s.StreamAlerts(pb.StreamAlertsRequest())]
    assert "drop" not in plain
    got = [a async for a in s.StreamAlerts(pb.StreamAlertsRequest(include_drops=True,
                                                                   domain="family"))]
    drop = got[-1]
    assert (drop.event_type, drop.action, drop.domain, drop.src_ip, drop.src_port,
            drop.dest_port, drop.proto, drop.flow_id) == (
        "drop", "blocked", "family", "203.0.113.10", 80, 4000, "TCP", 77)


async def test_without_an_engine_stats_say_down_and_reload_is_unavailable(
        stub: tuple) -> None:
    s, _ = stub
    stats = await s.GetStats(pb.GetStatsRequest())
    assert stats.engine == "down" and "--ipsd-socket" in stats.message
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.Reload(pb.ReloadRequest())
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not running" in (e.value.details() or "")
