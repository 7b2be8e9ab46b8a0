"""The provider channel over real mutual TLS on loopback: who gets in, what they may do."""
from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from netsec.provider_service import ProviderServicer, serve, server_identity
from netsec.trust import TrustStore
from netsec.updates import Updater
from proto.gen.hyperwall.control.v1 import control_pb2, control_pb2_grpc
from proto.gen.hyperwall.provider.v1 import provider_pb2 as pb
from proto.gen.hyperwall.provider.v1 import provider_pb2_grpc as pb_grpc
from tests.bundle_helpers import KEY, make, public_pem
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
    control = control_pb2_grpc.ControlServiceStub(connect())
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await control.Start(control_pb2.StartRequest(name="work"))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
