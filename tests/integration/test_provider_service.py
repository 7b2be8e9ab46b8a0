"""The provider channel over real mutual TLS on loopback: who gets in, what they may do."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from builder.bundle import assemble
from domains.syssec.provider_service import ProviderServicer, TrustCache, serve, server_identity
from domains.syssec.updates import Updater
from netsec.bundle import MAX_BUNDLE
from netsec.trust import TrustStore
from proto.gen.hyperwall.control.v1 import control_pb2, control_pb2_grpc
from proto.gen.hyperwall.provider.v1 import provider_pb2 as pb
from proto.gen.hyperwall.provider.v1 import provider_pb2_grpc as pb_grpc
from tests.bundle_helpers import (
    KEY,
    deep_json,
    end,
    make,
    member,
    pax,
    public_pem,
    signed_members,
    sparse_bomb,
)
from tests.tls_helpers import ca_and_client


@pytest.fixture
async def channel_to(tmp_path: Path) -> AsyncIterator:  # type: ignore[type-arg]
    provider_ca, client_cert, client_key = ca_and_client("acme")
    trust = TrustStore(tmp_path / "provider")
    trust.enroll(None, [public_pem(KEY)], provider_ca, provider="acme")
    reloads: list[str] = []
    updater = Updater(trust, tmp_path / "bundles", lambda: reloads.append("reload"))
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "eve.json").write_text(
        '{"event_type":"alert","timestamp":"t","alert":{"signature_id":5,"signature":"bad"}}\n')
    identity = server_identity(tmp_path / "tls")
    server, port = await serve(ProviderServicer(trust, updater, tmp_path / "log",
                                                lambda: "running",
                                                lambda: reloads.append("rules")),
                               "127.0.0.1:0", identity, trust.provider_ca)
    channels = []

    def connect(cert: bytes | None = client_cert, key: bytes | None = client_key):  # type: ignore[no-untyped-def]
        creds = grpc.ssl_channel_credentials(identity[0], key, cert)
        ch = grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options=[
            ("grpc.ssl_target_name_override", "sys-sec")])
        channels.append(ch)
        return ch
    try:
        yield connect, trust, reloads, tmp_path
    finally:
        for ch in channels:
            await ch.close()
        await server.stop(None)


async def test_the_enrolled_provider_sees_status_and_pushes_a_bundle(channel_to, tmp_path) -> None:  # type: ignore[no-untyped-def]
    connect, trust, reloads, _ = channel_to
    stub = pb_grpc.ProviderServiceStub(connect())
    assert (await stub.GetStatus(pb.GetStatusRequest())).provider == "acme"
    inputs = Path(tmp_path) / "in"
    (inputs / "rules").mkdir(parents=True)
    (inputs / "rules" / "p.rules").write_text(
        'alert http any any -> any any (msg:"p"; content:"evil"; sid:9; rev:1;)\n')
    (inputs / "lists").mkdir()
    (inputs / "policy.toml").write_text("")
    done = await stub.PushBundle(pb.PushBundleRequest(
        bundle=make(inputs, version=4, created=dt.datetime.now(dt.UTC))))
    assert done.applied_version == 4 and reloads == ["reload"]
    with pytest.raises(grpc.aio.AioRpcError) as e:   # the same version again: a replay
        await stub.PushBundle(pb.PushBundleRequest(
            bundle=make(inputs, version=4, created=dt.datetime.now(dt.UTC))))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not newer" in (e.value.details() or "")
    await stub.SetRuleEnabled(pb.SetRuleEnabledRequest(sid=9, enabled=False))
    assert list((await stub.GetStatus(pb.GetStatusRequest())).disabled_sids) == [9]


async def test_alerts_only_when_the_owner_shares_them(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, trust, _, _ = channel_to
    stub = pb_grpc.ProviderServiceStub(connect())
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.GetAlertSummary(pb.GetAlertSummaryRequest())
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    trust.update(share_alerts=True)
    got = await stub.GetAlertSummary(pb.GetAlertSummaryRequest())
    assert [(a.signature_id, a.count) for a in got.alerts] == [(5, 1)]


async def test_a_certificate_from_another_ca_or_none_is_refused(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, *_ = channel_to
    _, other_cert, other_key = ca_and_client("mallory")
    for channel in (connect(other_cert, other_key), connect(None, None)):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pb_grpc.ProviderServiceStub(channel).GetStatus(pb.GetStatusRequest(),
                                                                 timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_revoking_cuts_off_an_open_connection(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, trust, _, _ = channel_to
    stub = pb_grpc.ProviderServiceStub(connect())
    await stub.GetStatus(pb.GetStatusRequest())
    trust.revoke()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.GetStatus(pb.GetStatusRequest())
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in (e.value.details() or "")


async def test_a_domain_operation_is_not_there_to_ask_for(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, *_ = channel_to
    channel = connect()
    control = control_pb2_grpc.ControlServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await control.Start(control_pb2.StartRequest(name="work"))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # every method of the control API, whatever its shape, finds nothing on this channel
    service = control_pb2.DESCRIPTOR.services_by_name["ControlService"]
    assert len(service.methods) > 3
    for method in service.methods:
        call = channel.unary_unary(f"/{service.full_name}/{method.name}")
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, method.name


def bundle_inputs(root: Path, rule: str, policy: str = "") -> Path:
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "rules" / "p.rules").write_text(rule)
    (root / "lists").mkdir(exist_ok=True)
    (root / "policy.toml").write_text(policy)
    return root


GOOD = 'alert http any any -> any any (msg:"p"; content:"evil"; sid:9; rev:1;)\n'


async def test_a_bad_bundle_is_invalid_argument_and_changes_nothing(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, trust, reloads, tmp = channel_to
    stub = pb_grpc.ProviderServiceStub(connect())
    now = dt.datetime.now(dt.UTC)
    good = make(bundle_inputs(Path(tmp) / "good", GOOD), version=2, created=now)
    # signed by the enrolled key, but its policy reaches for a domain (the builder would
    # refuse to make it, so the files are assembled by hand)
    domain = assemble({"rules/p.rules": GOOD.encode(),
                       "policy.toml": b'[domains.work]\npolicy = "open"\n'},
                      key=KEY, provider="acme", version=3, created=now, valid_days=1)
    broad = make(bundle_inputs(Path(tmp) / "broad", 'drop http any any -> any any '
                               '(msg:"every page"; sid:5; rev:1;)\n'), version=3, created=now)
    for bad, says in ((good[: len(good.rstrip(b"\0")) - 10], "truncated"),
                      (b"", "not a readable bundle"),
                      (domain, "'domains' is not the provider's to set"),
                      (broad, "self-test failed")):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.PushBundle(pb.PushBundleRequest(bundle=bad))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert says in (e.value.details() or "")
    status = await stub.GetStatus(pb.GetStatusRequest())
    assert status.bundle_version == 0 and not status.HasField("applied_at") and reloads == []
    assert trust.last_version == 0


def _manifest(version: int, created: dt.datetime) -> bytes:
    return json.dumps({"format": 1, "provider": "acme", "version": version,
                       "created": created.isoformat(),
                       "expires": (created + dt.timedelta(days=1)).isoformat(),
                       "files": {}}).encode()


async def test_hostile_bundles_are_refused_with_their_reason_and_an_event(channel_to) -> None:  # type: ignore[no-untyped-def]
    """What used to escape verify (MemoryError, ValueError, RecursionError: UNKNOWN, no
    event) or be taken (a version the channel cannot carry, a date centuries ahead)."""
    connect, trust, reloads, tmp = channel_to
    stub = pb_grpc.ProviderServiceStub(connect())
    now = dt.datetime.now(dt.UTC)
    future = now + dt.timedelta(days=365 * 300)
    cases = [
        (sparse_bomb(16, 32 << 20), grpc.StatusCode.INVALID_ARGUMENT, "a GNU sparse file"),
        (pax({"GNU.sparse.map": "zero,one"}) + member("rules/a.rules", b"x") + end(),
         grpc.StatusCode.INVALID_ARGUMENT, "a pax extended header"),
        (signed_members(_manifest(2, now), signatures=deep_json(30_000)) + end(),
         grpc.StatusCode.INVALID_ARGUMENT, "signatures.json: nested deeper than 8"),
        (signed_members(_manifest(1 << 64, now)) + end(), grpc.StatusCode.INVALID_ARGUMENT,
         "version 18446744073709551616 is not a positive integer of at most 64 bits"),
        (assemble({"rules/p.rules": GOOD.encode(),
                   "policy.toml": b'[schedules]\nadult = ["daily 00:00-24:00"]\n'},
                  key=KEY, provider="acme", version=2, created=now, valid_days=1),
         grpc.StatusCode.INVALID_ARGUMENT, "'adult': not a category the bundle ships"),
        (b"\0" * (MAX_BUNDLE + 1), grpc.StatusCode.INVALID_ARGUMENT,
         f"bundle is {MAX_BUNDLE + 1} bytes, over the {MAX_BUNDLE} limit"),
        (assemble({"rules/p.rules": GOOD.encode()}, key=KEY, provider="acme", version=2,
                  created=future, valid_days=1),
         grpc.StatusCode.FAILED_PRECONDITION, "a bundle from the future"),
    ]
    for bad, code, says in cases:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.PushBundle(pb.PushBundleRequest(bundle=bad))
        assert (e.value.code(), says in (e.value.details() or "")) == (code, True), \
            e.value.details()
    events = [json.loads(line) for line in
              (Path(tmp) / "bundles" / "events.jsonl").read_text().splitlines()]
    assert [(ev["applied"], ev["step"]) for ev in events] == [(False, "verify")] * len(cases)
    assert all(says in ev["reason"] for ev, (_, _, says) in zip(events, cases, strict=True))
    status = await stub.GetStatus(pb.GetStatusRequest())
    assert status.bundle_version == 0 and reloads == [] and trust.last_version == 0
    # the positive control: the channel takes a good bundle after all of that
    good = make(bundle_inputs(Path(tmp) / "good", GOOD), version=3, created=now)
    assert (await stub.PushBundle(pb.PushBundleRequest(bundle=good))).applied_version == 3


async def test_a_message_past_the_bundle_limit_is_not_read(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, *_ = channel_to
    stub = pb_grpc.ProviderServiceStub(connect())
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.PushBundle(pb.PushBundleRequest(bundle=b"\0" * (MAX_BUNDLE + (1 << 20))))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_status_names_the_bundle_in_force_and_when(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, _, _, tmp = channel_to
    stub = pb_grpc.ProviderServiceStub(connect())
    inputs = bundle_inputs(Path(tmp) / "in", GOOD)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for version in (5, 6):
        await stub.PushBundle(pb.PushBundleRequest(
            bundle=make(inputs, version=version, created=dt.datetime.now(dt.UTC))))
    status = await stub.GetStatus(pb.GetStatusRequest())
    assert (status.bundle_version, status.previous_version, status.engine) == (6, 5, "running")
    assert status.applied_at.ToDatetime(dt.UTC) >= before


async def test_health_is_served_beside_the_service(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, *_ = channel_to
    health = health_pb2_grpc.HealthStub(connect())
    for name in ("", "hyperwall.provider.v1.ProviderService"):
        got = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert got.status == health_pb2.HealthCheckResponse.SERVING


async def test_revoked_provider_cannot_push_on_its_open_connection(channel_to) -> None:  # type: ignore[no-untyped-def]
    connect, trust, reloads, tmp = channel_to
    stub = pb_grpc.ProviderServiceStub(connect())
    await stub.GetStatus(pb.GetStatusRequest())
    trust.revoke()
    inputs = bundle_inputs(Path(tmp) / "in", GOOD)
    for call in (stub.PushBundle(pb.PushBundleRequest(
                     bundle=make(inputs, version=7, created=dt.datetime.now(dt.UTC)))),
                 stub.SetRuleEnabled(pb.SetRuleEnabledRequest(sid=9, enabled=False)),
                 stub.GetAlertSummary(pb.GetAlertSummaryRequest())):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reloads == [] and trust.load().disabled_sids == [] and trust.last_version == 0


@asynccontextmanager
async def engine_channel(tmp_path: Path, engine_state: Callable[[], str],
                         reload: Callable[[], None]
                         ) -> AsyncIterator[tuple[pb_grpc.ProviderServiceStub, TrustStore]]:
    """The channel of a sys-sec whose engine answers with `reload` (bundles and sids alike),
    and the enrolled provider's stub on it."""
    provider_ca, cert, key = ca_and_client("acme")
    trust = TrustStore(tmp_path / "provider")
    trust.enroll(None, [public_pem(KEY)], provider_ca, provider="acme")
    servicer = ProviderServicer(trust, Updater(trust, tmp_path / "bundles", reload),
                                tmp_path / "log", engine_state, reload)
    identity = server_identity(tmp_path / "tls")
    server, port = await serve(servicer, "127.0.0.1:0", identity, trust.provider_ca)
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{port}", grpc.ssl_channel_credentials(identity[0], key, cert),
        options=[("grpc.ssl_target_name_override", "sys-sec")])
    try:
        yield pb_grpc.ProviderServiceStub(channel), trust
    finally:
        await channel.close()
        await server.stop(None)


async def test_a_disabled_sid_is_kept_when_the_engine_cannot_reload_now(tmp_path: Path) -> None:
    def engine_down() -> None:
        raise OSError("ipsd is not running")
    async with engine_channel(tmp_path, lambda: "restarting", engine_down) as (stub, trust):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SetRuleEnabled(pb.SetRuleEnabledRequest(sid=42, enabled=False))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "from the next load on" in (e.value.details() or "")
        assert trust.load().disabled_sids == [42]


def test_the_trust_cache_rereads_only_a_changed_store(tmp_path: Path) -> None:
    trust = TrustStore(tmp_path / "provider")
    trust.enroll(None, [public_pem(KEY)], provider="acme")
    loads: list[int] = []
    real = trust.load

    def counting():  # type: ignore[no-untyped-def]
        loads.append(1)
        return real()
    trust.load = counting  # type: ignore[method-assign]
    cache = TrustCache(trust)
    assert not cache.state().revoked and not cache.state().revoked and len(loads) == 1
    real_revoke = TrustStore(trust.path)
    real_revoke.revoke()
    assert cache.state().revoked and len(loads) == 2


async def test_the_channel_answers_while_the_engine_confirms_a_reload(tmp_path: Path) -> None:
    """SetRuleEnabled waits for the engine to confirm its reload (seconds for a large rule
    set); sys-sec's event loop, the channel's other calls included, goes on meanwhile."""
    confirmed = threading.Event()

    def engine_confirms() -> None:
        assert confirmed.wait(10), "the test never let the engine confirm"
    async with engine_channel(tmp_path, lambda: "running", engine_confirms) as (stub, trust):
        disabling = asyncio.ensure_future(
            stub.SetRuleEnabled(pb.SetRuleEnabledRequest(sid=42, enabled=False)))
        while trust.load().disabled_sids != [42]:   # the store is a file: no event
            await asyncio.sleep(0.01)
        status = await stub.GetStatus(pb.GetStatusRequest(), timeout=5)
        assert list(status.disabled_sids) == [42] and not disabling.done()
        confirmed.set()
        await asyncio.wait_for(disabling, 10)


async def test_a_version_an_older_release_recorded_past_uint64_stops_nothing_but_bundles(
        channel_to) -> None:  # type: ignore[no-untyped-def]
    """An older release took a signed version 2**64 and recorded it, with its folder in
    force: GetStatus then failed on every call (UNKNOWN) and every bundle had to be newer
    than it. Now the channel answers, the fault is an event naming the file and the value,
    bundles wait for the owner, and after the owner enrolls again the next one applies."""
    connect, trust, reloads, tmp = channel_to
    bogus = 1 << 64
    state = json.loads(trust.state_file.read_text())
    trust.state_file.write_text(json.dumps({**state, "last_version": bogus}))
    bundles = Path(tmp) / "bundles"
    (bundles / str(bogus) / "rules").mkdir(parents=True)
    (bundles / "current").symlink_to(str(bogus))
    stub = pb_grpc.ProviderServiceStub(connect())
    status = await stub.GetStatus(pb.GetStatusRequest(), timeout=5)
    assert (status.provider, status.bundle_version, status.previous_version) == ("acme", 0, 0)
    faults = [json.loads(line) for line in (bundles / "events.jsonl").read_text().splitlines()]
    assert [(ev["step"], ev["applied"]) for ev in faults] == [("state", False)] * 2
    assert f"{trust.state_file}: last_version {bogus} is not a bundle version" \
        in faults[0]["reason"]
    assert f"{bundles / 'current'} -> {bogus}: not a bundle version" in faults[1]["reason"]
    await stub.GetStatus(pb.GetStatusRequest(), timeout=5)     # said once, not per call
    assert len((bundles / "events.jsonl").read_text().splitlines()) == 2
    good = make(bundle_inputs(Path(tmp) / "good", GOOD), version=3,
                created=dt.datetime.now(dt.UTC))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.PushBundle(pb.PushBundleRequest(bundle=good))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"last_version {bogus} is not a bundle version" in (e.value.details() or "")
    assert "hyperwall provider enroll" in (e.value.details() or "") and reloads == []
    assert json.loads(trust.state_file.read_text())["last_version"] == bogus
    trust.enroll(None, [public_pem(KEY)], trust.provider_ca())      # the owner's word
    assert (await stub.PushBundle(pb.PushBundleRequest(bundle=good))).applied_version == 3
    status = await stub.GetStatus(pb.GetStatusRequest(), timeout=5)
    assert (status.bundle_version, status.previous_version) == (3, 0)
    assert reloads == ["reload"] and trust.last_version == 3
