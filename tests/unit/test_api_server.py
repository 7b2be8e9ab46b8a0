"""The control API over real gRPC on real Unix sockets, the toolstack being the stand-in.

`serve()` (with the real credential proxy) is exercised as the test's own user; the
permission matrix for other users goes through the same servicer with their callers.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dom0.api.auth import Caller
from dom0.api.convert import domain_from_pb, event_from_pb
from dom0.api.server import SERVICE_NAME, ControlServer, ControlServicer, SecurityRelay, serve
from dom0.backends.base import BackendError, ExecResult
from dom0.model import DomainState, EventKind, InvalidState, ToolstackError
from domains.syssec.security_service import serve as serve_security
from netsec.trust import TrustStore, describe
from proto.gen.hyperwall.control.v1 import control_pb2 as pb
from proto.gen.hyperwall.control.v1 import control_pb2_grpc as pb_grpc
from proto.gen.hyperwall.netsec.v1 import security_pb2 as sec_pb
from tests.control_fakes import StandInToolstack, short_dir

TIMEOUT = 10.0
T = TypeVar("T")


@pytest.fixture
def toolstack() -> StandInToolstack:
    return StandInToolstack()


@pytest.fixture
async def served(toolstack: StandInToolstack) -> AsyncIterator[tuple[ControlServer, Path]]:
    with short_dir() as run:
        socket_path = run / "hyperwall" / "control.sock"
        server = await serve(toolstack, socket_path)
        try:
            yield server, socket_path
        finally:
            await server.stop(None)


@pytest.fixture
async def channel(served: tuple[ControlServer, Path]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"unix:{served[1]}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.ControlServiceStub:
    return pb_grpc.ControlServiceStub(channel)


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code()


# -- serving --------------------------------------------------------------------------------

async def test_public_socket_is_0666_and_grpc_sits_in_a_root_only_dir(
        served: tuple[ControlServer, Path]) -> None:
    server, socket_path = served
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o666
    internal = server.internal_socket.parent
    assert stat.S_IMODE(internal.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(server.internal_socket.stat().st_mode)


async def test_health_reports_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service),
                                   timeout=TIMEOUT)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def one() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for reply in stub.ServerReflectionInfo(one(), timeout=TIMEOUT):
        names = {s.name for s in reply.list_services_response.service}
    assert {"hyperwall.control.v1.ControlService", "grpc.health.v1.Health"} <= names


async def test_stop_removes_the_sockets(toolstack: StandInToolstack) -> None:
    with short_dir() as run:
        server = await serve(toolstack, run / "control.sock")
        await server.stop(None)
        assert not (run / "control.sock").exists()
        assert not server.internal_socket.exists()


async def test_each_connection_is_known_by_its_bound_path_until_it_closes(
        served: tuple[ControlServer, Path], stub: pb_grpc.ControlServiceStub) -> None:
    server, _ = served
    await stub.List(pb.ListRequest(), timeout=TIMEOUT)
    peers = list(server.internal_socket.parent.glob("peer-*"))
    assert [p.name.split("-")[1] for p in peers] == [str(os.geteuid())]
    cred = server.proxy.lookup(f"unix:{peers[0]}")
    assert cred is not None and cred.uid == os.geteuid() and cred.pid == os.getpid()


async def test_closing_the_connection_removes_its_bound_path(
        served: tuple[ControlServer, Path]) -> None:
    server, socket_path = served
    async with grpc.aio.insecure_channel(f"unix:{socket_path}") as ch:
        await pb_grpc.ControlServiceStub(ch).List(pb.ListRequest(), timeout=TIMEOUT)
        assert list(server.internal_socket.parent.glob("peer-*"))
    async with asyncio.timeout(TIMEOUT):
        while list(server.internal_socket.parent.glob("peer-*")):
            # The proxy notices the close on its next read; nothing to wait on from here.
            await asyncio.sleep(0.01)


async def test_connections_beyond_the_limit_are_closed(
        served: tuple[ControlServer, Path]) -> None:
    server, socket_path = served
    server.proxy.max_connections = 1
    async with asyncio.timeout(TIMEOUT):
        _, first = await asyncio.open_unix_connection(str(socket_path))
        while not list(server.internal_socket.parent.glob("peer-*")):
            await asyncio.sleep(0.01)  # the proxy has taken the first one
        second, _ = await asyncio.open_unix_connection(str(socket_path))
        assert await second.read() == b""  # closed without a byte
    first.close()


async def test_a_call_that_bypasses_the_proxy_is_refused(
        served: tuple[ControlServer, Path]) -> None:
    server, _ = served
    async with grpc.aio.insecure_channel(f"unix:{server.internal_socket}") as ch:
        code = await _code(pb_grpc.ControlServiceStub(ch).List(pb.ListRequest(), timeout=TIMEOUT))
    assert code == grpc.StatusCode.PERMISSION_DENIED


# -- the RPCs as an owner (the test runs as root or the proxy sees its own uid) -----------

needs_owner = pytest.mark.skipif(os.geteuid() != 0, reason="the caller must be an owner")


@needs_owner
async def test_lifecycle(stub: pb_grpc.ControlServiceStub, toolstack: StandInToolstack) -> None:
    created = domain_from_pb((await stub.Create(pb.CreateRequest(name="work"))).domain)
    assert created.state == DomainState.CREATED and created.domid == 1
    started = domain_from_pb((await stub.Start(pb.StartRequest(name="work"))).domain)
    assert started.state == DomainState.RUNNING
    await stub.Pause(pb.PauseRequest(name="work"))
    got = domain_from_pb((await stub.Get(pb.GetRequest(name="work"))).domain)
    assert got.state == DomainState.PAUSED
    await stub.Unpause(pb.UnpauseRequest(name="work"))
    await stub.Shutdown(pb.ShutdownRequest(name="work", reboot=True, timeout_seconds=5))
    await stub.Destroy(pb.DestroyRequest(name="work"))
    assert toolstack.calls == [
        ("create", "work"), ("start", "work"), ("pause", "work"), ("unpause", "work"),
        ("shutdown", "work", "reboot=True", "timeout=5.0"), ("destroy", "work")]


@needs_owner
async def test_list_mirrors_the_model(stub: pb_grpc.ControlServiceStub,
                                      toolstack: StandInToolstack) -> None:
    await toolstack.start("work")
    reply = await stub.List(pb.ListRequest(), timeout=TIMEOUT)
    assert [domain_from_pb(d) for d in reply.domains] == toolstack.list()


@needs_owner
async def test_exec_passes_argv_stdin_timeout_and_returns_the_result(
        stub: pb_grpc.ControlServiceStub, toolstack: StandInToolstack) -> None:
    await toolstack.start("work")
    toolstack.exec_result = ExecResult(3, b"out\xff", b"err")
    reply = await stub.Exec(pb.ExecRequest(name="work", argv=["cat", "-"], stdin=b"in",
                                           timeout_seconds=2.5), timeout=TIMEOUT)
    assert (reply.exit_code, reply.stdout, reply.stderr) == (3, b"out\xff", b"err")
    assert toolstack.calls[-1] == ("exec", "work", "cat", "-", "timeout=2.5", "stdin=b'in'")
    await stub.Exec(pb.ExecRequest(name="work", argv=["true"]), timeout=TIMEOUT)
    assert toolstack.calls[-1] == ("exec", "work", "true", "timeout=60.0", "stdin=None")


@needs_owner
async def test_up_and_down(stub: pb_grpc.ControlServiceStub,
                           toolstack: StandInToolstack) -> None:
    reply = await stub.Up(pb.UpRequest(), timeout=TIMEOUT)
    assert [d.name for d in reply.domains] == ["sys-sec", "work"]
    await stub.Down(pb.DownRequest(), timeout=TIMEOUT)
    assert toolstack.calls[-1] == ("shutdown", "sys-sec", "reboot=False", "timeout=30.0")


@needs_owner
async def test_events_stream_from_when_the_headers_arrive(
        stub: pb_grpc.ControlServiceStub, toolstack: StandInToolstack) -> None:
    call = stub.Events(pb.EventsRequest())
    async with asyncio.timeout(TIMEOUT):
        await call.initial_metadata()
        await toolstack.start("work")
        kinds = [event_from_pb(await call.read()).kind for _ in range(2)]
    assert kinds == [EventKind.CREATED, EventKind.STARTED]
    call.cancel()
    async with asyncio.timeout(TIMEOUT):
        while toolstack.subscribers:
            await asyncio.sleep(0.01)  # the server unsubscribes once it sees the cancel


# -- errors -------------------------------------------------------------------------------

@needs_owner
@pytest.mark.parametrize("error, code", [
    (InvalidState("'work' is not running"), grpc.StatusCode.FAILED_PRECONDITION),
    (ToolstackError("the uplink is down"), grpc.StatusCode.FAILED_PRECONDITION),
])
async def test_toolstack_errors_keep_their_message(
        stub: pb_grpc.ControlServiceStub, toolstack: StandInToolstack,
        error: ToolstackError, code: grpc.StatusCode) -> None:
    toolstack.fail_with = error
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Start(pb.StartRequest(name="work"), timeout=TIMEOUT)
    assert (err.value.code(), err.value.details()) == (code, str(error))


@needs_owner
async def test_unknown_domain_is_not_found(stub: pb_grpc.ControlServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Get(pb.GetRequest(name="nope"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'nope'" in (err.value.details() or "")


@needs_owner
@pytest.mark.parametrize("request_", [
    pb.StartRequest(name=""),
])
async def test_a_request_without_a_name_is_invalid(stub: pb_grpc.ControlServiceStub,
                                                   request_: pb.StartRequest) -> None:
    assert await _code(stub.Start(request_, timeout=TIMEOUT)) == \
        grpc.StatusCode.INVALID_ARGUMENT


@needs_owner
async def test_bad_exec_requests_are_invalid(stub: pb_grpc.ControlServiceStub,
                                             toolstack: StandInToolstack) -> None:
    await toolstack.start("work")
    for request in (pb.ExecRequest(name="work"),
                    pb.ExecRequest(name="work", argv=["true"], timeout_seconds=-1)):
        assert await _code(stub.Exec(request, timeout=TIMEOUT)) == \
            grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(stub.Shutdown(pb.ShutdownRequest(name="work", timeout_seconds=0),
                                     timeout=TIMEOUT)) == grpc.StatusCode.INVALID_ARGUMENT


@needs_owner
async def test_a_backends_failure_is_the_domains_state_not_internal(
        stub: pb_grpc.ControlServiceStub, toolstack: StandInToolstack) -> None:
    # make test-xen once saw `hyperwall exec sys-sec ...` end in "dom0d failed (internal
    # error)" where the backend had said the domain's agent did not answer in 25 s.
    toolstack.fail_with = BackendError("exec in domain 1: its agent did not answer within 25 s")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Start(pb.StartRequest(name="work"), timeout=TIMEOUT)
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "exec in domain 1: its agent did not answer within 25 s")


@needs_owner
async def test_an_unexpected_exception_is_logged_and_the_client_gets_internal(
        stub: pb_grpc.ControlServiceStub, toolstack: StandInToolstack,
        caplog: pytest.LogCaptureFixture) -> None:
    toolstack.fail_with = KeyError("secret-internal-detail")
    with caplog.at_level(logging.ERROR, logger="dom0.api.server"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Start(pb.StartRequest(name="work"), timeout=TIMEOUT)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INTERNAL,
                                                        "internal error")
    assert "secret-internal-detail" not in str(err.value)
    assert "Traceback" not in str(err.value)
    assert any(r.exc_info and "secret-internal-detail" in str(r.exc_info[1])
               for r in caplog.records)


# -- the permission matrix through the servicer, one caller per connection ----------------

OWNER = Caller(uid=1001, user="olga", owner=True)
ALICE = Caller(uid=1002, user="alice", owner=False)
MALLORY = Caller(uid=1003, user="mallory", owner=False)


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code, self.details = code, details


class FakeContext:
    """The part of grpc.aio.ServicerContext the servicer uses. A gRPC client cannot choose
    the path its socket is bound to, so the matrix calls the servicer with the peer a
    proxied connection of each caller would have; the real proxy is tested above and with
    real users in tests/integration/test_control_api.py."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    async def send_initial_metadata(self, metadata: object) -> None:
        pass


CALLERS = {c.user: c for c in (OWNER, ALICE, MALLORY)}


def _servicer(toolstack: StandInToolstack) -> ControlServicer:
    return ControlServicer(toolstack, lambda peer: CALLERS.get(peer.removeprefix("unix:/p/")))


def _ctx(user: str) -> FakeContext:
    return FakeContext(f"unix:/p/{user}")


PER_DOMAIN = {
    "Get": lambda n: pb.GetRequest(name=n), "Start": lambda n: pb.StartRequest(name=n),
    "Shutdown": lambda n: pb.ShutdownRequest(name=n), "Pause": lambda n: pb.PauseRequest(name=n),
    "Unpause": lambda n: pb.UnpauseRequest(name=n),
    "Exec": lambda n: pb.ExecRequest(name=n, argv=["true"]),
    "Create": lambda n: pb.CreateRequest(name=n), "Destroy": lambda n: pb.DestroyRequest(name=n),
}
OWNER_ONLY = {"Create", "Destroy"}


async def _outcome(servicer: ControlServicer, method: str, request: object,
                   user: str) -> grpc.StatusCode:
    try:
        await getattr(servicer, method)(request, _ctx(user))
    except Aborted as e:
        return e.code
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", sorted(PER_DOMAIN))
@pytest.mark.parametrize("user, domain, allowed", [
    ("olga", "work", True), ("olga", "untrusted", True),
    ("alice", "work", True), ("alice", "family", True), ("alice", "untrusted", False),
    ("mallory", "work", False), ("mallory", "family", False),
])
async def test_permission_matrix(toolstack: StandInToolstack, method: str, user: str,
                                 domain: str, allowed: bool) -> None:
    servicer = _servicer(toolstack)
    code = await _outcome(servicer, method, PER_DOMAIN[method](domain), user)
    if allowed and (method not in OWNER_ONLY or CALLERS[user].owner):
        # The operation reached the stand-in (which may refuse it for the domain's state).
        assert code != grpc.StatusCode.PERMISSION_DENIED
        if method == "Get":
            assert code == grpc.StatusCode.OK
        else:
            assert toolstack.calls[0][:2] == (method.lower(), domain)
    else:
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert toolstack.calls == []


async def test_a_non_owner_cannot_tell_a_hidden_domain_from_a_missing_one(
        toolstack: StandInToolstack) -> None:
    servicer = _servicer(toolstack)
    messages = []
    for name in ("untrusted", "no-such-domain"):
        with pytest.raises(Aborted) as err:
            await servicer.Get(pb.GetRequest(name=name), _ctx("alice"))
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
        messages.append(err.value.details.replace(repr(name), "NAME"))
    assert messages[0] == messages[1]
    assert "'alice'" in messages[0] and "users" in messages[0]


async def test_an_owner_gets_not_found_for_a_missing_domain(toolstack: StandInToolstack) -> None:
    assert await _outcome(_servicer(toolstack), "Get", pb.GetRequest(name="nope"), "olga") == \
        grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("user, visible", [
    ("olga", ["sys-sec", "family", "untrusted", "work"]),
    ("alice", ["family", "work"]),
    ("mallory", []),
])
async def test_list_shows_what_the_caller_may_use(toolstack: StandInToolstack, user: str,
                                                  visible: list[str]) -> None:
    reply = await _servicer(toolstack).List(pb.ListRequest(), _ctx(user))
    assert [d.name for d in reply.domains] == visible


@pytest.mark.parametrize("method, request_", [("Up", pb.UpRequest()),
                                              ("Down", pb.DownRequest())])
@pytest.mark.parametrize("user, allowed", [("olga", True), ("alice", False),
                                           ("mallory", False)])
async def test_the_platform_is_for_owners(toolstack: StandInToolstack, method: str,
                                          request_: object, user: str, allowed: bool) -> None:
    code = await _outcome(_servicer(toolstack), method, request_, user)
    assert (code == grpc.StatusCode.OK) == allowed
    assert (toolstack.calls[:1] == [(method.lower(),)]) == allowed


async def test_events_are_filtered_to_the_callers_domains(toolstack: StandInToolstack) -> None:
    stream = _servicer(toolstack).Events(pb.EventsRequest(), _ctx("alice"))
    first = asyncio.ensure_future(anext(stream))
    async with asyncio.timeout(TIMEOUT):
        await toolstack.subscribed.wait()
        for name in ("untrusted", "work", "sys-sec", "family"):
            await toolstack.start(name)
        seen = [await first] + [await anext(stream) for _ in range(3)]
    assert [(e.domain, event_from_pb(e).kind) for e in seen] == [
        ("work", EventKind.CREATED), ("work", EventKind.STARTED),
        ("family", EventKind.CREATED), ("family", EventKind.STARTED)]
    await stream.aclose()
    assert toolstack.subscribers == 0


# -- sys-sec's SecurityService, relayed for the caller ---------------------------------------

def _alert(domain: str, sid: int) -> dict[str, object]:
    return {"timestamp": f"2026-11-24T09:00:0{sid}.000000+0000", "event_type": "alert",
            "src_ip": "10.137.0.2", "dest_ip": "192.0.2.1",
            "alert": {"action": "blocked", "signature_id": sid, "signature": f"sid {sid}"},
            "hyperwall": {"domain": domain}}


def relay_log(relay: SecurityRelay) -> Path:
    return relay.upstream.parent / "log" / "eve.json"


@pytest.fixture
async def relay(toolstack: StandInToolstack) -> AsyncIterator[SecurityRelay]:
    """The relay in front of a real SecurityService over EVE records of three domains and
    one that names none."""
    records = [_alert("work", 1), _alert("family", 2), _alert("untrusted", 3), _alert("", 4)]
    with short_dir() as run:
        logs = run / "log"
        logs.mkdir()
        (logs / "eve.json").write_text("".join(json.dumps(r) + "\n" for r in records))
        upstream = await serve_security(logs, run / "security.sock")
        try:
            yield SecurityRelay(toolstack, lambda peer: CALLERS.get(
                peer.removeprefix("unix:/p/")), run / "security.sock")
        finally:
            await upstream.stop(None)


async def _read(stream: AsyncIterator[T]) -> list[T] | grpc.StatusCode:
    try:
        return [item async for item in stream]
    except Aborted as e:
        return e.code


@pytest.mark.parametrize("user, domain, shown", [
    ("olga", "", [1, 2, 3, 4]), ("olga", "untrusted", [3]),
    ("alice", "", [1, 2]), ("alice", "family", [2]),
    ("alice", "untrusted", grpc.StatusCode.PERMISSION_DENIED),
    ("alice", "nope", grpc.StatusCode.PERMISSION_DENIED),
    ("mallory", "", grpc.StatusCode.PERMISSION_DENIED),
    ("mallory", "work", grpc.StatusCode.PERMISSION_DENIED),
])
async def test_alerts_and_records_are_those_the_caller_may_read(
        relay: SecurityRelay, user: str, domain: str,
        shown: list[int] | grpc.StatusCode) -> None:
    alerts = await _read(relay.StreamAlerts(sec_pb.StreamAlertsRequest(domain=domain),
                                            _ctx(user)))
    records = await _read(relay.StreamEvents(sec_pb.StreamEventsRequest(domain=domain),
                                             _ctx(user)))
    if isinstance(shown, grpc.StatusCode):
        assert alerts == records == shown
        return
    assert isinstance(alerts, list) and isinstance(records, list)
    assert [a.signature_id for a in alerts] == shown
    assert [json.loads(r.eve_json)["alert"]["signature_id"] for r in records] == shown


async def test_followed_alerts_are_filtered_as_they_come(relay: SecurityRelay) -> None:
    stream = relay.StreamAlerts(sec_pb.StreamAlertsRequest(follow=True), _ctx("alice"))
    async with asyncio.timeout(TIMEOUT):
        # sys-sec follows the log before it sends the past: what is appended after the
        # past arrived is new.
        assert [(await anext(stream)).signature_id for _ in range(2)] == [1, 2]
        with open(relay_log(relay), "a") as log:
            log.write(json.dumps(_alert("untrusted", 5)) + "\n")
            log.write(json.dumps(_alert("family", 6)) + "\n")
        assert (await anext(stream)).signature_id == 6
    await stream.aclose()


@pytest.mark.parametrize("user, allowed", [("olga", True), ("alice", False)])
async def test_the_engines_counters_are_the_owners(relay: SecurityRelay, user: str,
                                                   allowed: bool) -> None:
    try:
        stats = await relay.GetStats(sec_pb.GetStatsRequest(), _ctx(user))
    except Aborted as e:
        assert not allowed and e.code == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert allowed and stats.engine == "down"   # started without an engine


async def test_sys_sec_not_answering_is_said_naming_its_socket(
        toolstack: StandInToolstack, tmp_path: Path) -> None:
    relay = SecurityRelay(toolstack, lambda peer: OWNER, tmp_path / "no.sock")
    with pytest.raises(Aborted) as e:
        [a async for a in relay.StreamAlerts(sec_pb.StreamAlertsRequest(), _ctx("olga"))]
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert str(tmp_path / "no.sock") in e.value.details and "sys-sec" in e.value.details


@pytest.mark.parametrize("user, allowed", [("olga", True), ("alice", False)])
async def test_the_providers_status_is_the_owners(toolstack: StandInToolstack, tmp_path: Path,
                                                  user: str, allowed: bool) -> None:
    TrustStore(tmp_path / "provider").update(provider="acme", share_alerts=True)
    servicer = ControlServicer(toolstack, lambda peer: CALLERS.get(
        peer.removeprefix("unix:/p/")), tmp_path / "provider")
    try:
        reply = await servicer.ProviderStatus(pb.ProviderStatusRequest(), _ctx(user))
    except Aborted as e:
        assert not allowed and e.code == grpc.StatusCode.PERMISSION_DENIED
        assert "provider status is reserved to the platform's owners" in e.details
    else:
        assert allowed
        assert json.loads(reply.status_json) == describe(TrustStore(tmp_path / "provider"))
