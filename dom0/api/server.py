"""The control API: `hyperwall.control.v1.ControlService` mapped onto the toolstack, and
`hyperwall.netsec.v1.SecurityService` relayed from sys-sec's root-only socket for callers
who are not root (`SecurityRelay`).

Each RPC is a few lines: find the caller, ask the policy (auth.refusal), call the toolstack,
convert the answer. Errors follow one hierarchy (dom0.model.ToolstackError): its subclasses
become gRPC status codes with their message for a person; anything else is a bug, logged
here with its traceback while the client gets INTERNAL "internal error".

dom0d calls `serve()` and later `ControlServer.stop()`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dom0.api import DEFAULT_SOCKET, auth
from dom0.api.auth import Caller, CredentialProxy, Operation
from dom0.api.convert import domain_to_pb, event_to_pb
from dom0.backends.base import BackendError, ExecResult
from dom0.model import (
    DomainEvent,
    DomainInfo,
    InvalidState,
    PermissionRefused,
    ToolstackError,
    UnknownDomain,
)
from netsec.evelog import domain_of
from netsec.trust import TrustStore, describe
from proto.gen.hyperwall.control.v1 import control_pb2 as pb
from proto.gen.hyperwall.control.v1 import control_pb2_grpc as pb_grpc
from proto.gen.hyperwall.netsec.v1 import security_pb2 as sec_pb
from proto.gen.hyperwall.netsec.v1 import security_pb2_grpc as sec_pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ControlService"].full_name
SECURITY_SERVICE_NAME = sec_pb.DESCRIPTOR.services_by_name["SecurityService"].full_name
# sys-sec's folder on the host as dom0d's default --state-dir holds it.
DEFAULT_SYS_SEC_DIR = Path("/var/lib/hyperwall/sys-sec")
T = TypeVar("T")
R = TypeVar("R")
# Spelled at module level: inside Toolstack, `list` names its method.
Infos = list[DomainInfo]
Argv = list[str]


class Toolstack(Protocol):
    """What the API needs of dom0.toolstack.Toolstack."""

    specs: dict[str, Any]

    def list(self) -> Infos: ...
    def get(self, name: str) -> DomainInfo: ...
    async def create(self, name: str) -> DomainInfo: ...
    async def start(self, name: str) -> DomainInfo: ...
    async def shutdown(self, name: str, *, reboot: bool = False,
                       timeout: float = 30.0) -> None: ...
    async def destroy(self, name: str) -> None: ...
    async def pause(self, name: str) -> None: ...
    async def unpause(self, name: str) -> None: ...
    async def exec(self, name: str, argv: Argv, *, timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult: ...
    def subscribe(self) -> AsyncIterator[DomainEvent]: ...
    async def up(self) -> Infos: ...
    async def down(self) -> None: ...
    def scan(self, name: str, paths: Argv | None = None, *,
             apply_policy: bool = True) -> AsyncIterator[dict[str, Any]]: ...
    def recover_domain(self, name: str, action: str = "") -> AsyncIterator[dict[str, Any]]: ...


class BadRequest(ToolstackError):
    """A request no domain state could make valid (empty name, empty argv, bad timeout)."""


_STATUS: list[tuple[type[ToolstackError], grpc.StatusCode]] = [
    (UnknownDomain, grpc.StatusCode.NOT_FOUND),
    (PermissionRefused, grpc.StatusCode.PERMISSION_DENIED),
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidState, grpc.StatusCode.FAILED_PRECONDITION),
    # Any other refusal by the toolstack is about the platform's state, not the request.
    (ToolstackError, grpc.StatusCode.FAILED_PRECONDITION),
]


def status_for(error: ToolstackError) -> grpc.StatusCode:
    return next(code for cls, code in _STATUS if isinstance(error, cls))


async def _fail(context: grpc.aio.ServicerContext, method: str, error: Exception) -> NoReturn:
    """End the call with the status `error` stands for; a bug is logged, not shown."""
    if isinstance(error, grpc.aio.AbortError):
        raise error
    if isinstance(error, ToolstackError):
        await context.abort(status_for(error), str(error))
    if isinstance(error, BackendError):
        # The backend says which domain, which step and why (a guest's agent that does not
        # answer an exec): the domain's state, not a bug in dom0.
        log.warning("control API %s: %s", method, error)
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
    log.error("control API %s failed", method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    raise AssertionError("grpc's abort() returned; it always raises")  # for type checkers


def _name(name: str) -> str:
    if not name:
        raise BadRequest("the request names no domain")
    return name


def _timeout(request: Any, default: float) -> float:
    if not request.HasField("timeout_seconds"):
        return default
    if not request.timeout_seconds > 0:
        raise BadRequest(f"timeout_seconds must be positive, got {request.timeout_seconds}")
    return float(request.timeout_seconds)


Callers = Callable[[str], Caller | None]


def _caller(callers: Callers, context: grpc.aio.ServicerContext) -> Caller:
    caller = callers(context.peer())
    if caller is None:
        # Only root can reach the internal socket directly, but a call that did not
        # come through the proxy carries no credentials to authorise: refuse it.
        raise PermissionRefused("connection did not come through the control socket")
    return caller


class ControlServicer(pb_grpc.ControlServiceServicer):
    def __init__(self, toolstack: Toolstack, callers: Callers,
                 provider_dir: Path = DEFAULT_SYS_SEC_DIR / "provider") -> None:
        self.toolstack = toolstack
        self._callers = callers
        self.provider_dir = provider_dir

    def _authorise(self, context: grpc.aio.ServicerContext, op: Operation,
                   name: str | None = None) -> Caller:
        caller = _caller(self._callers, context)
        spec = self.toolstack.specs.get(name) if name is not None else None
        reason = auth.refusal(caller, op, name, tuple(spec.users) if spec else None)
        if reason is not None:
            raise PermissionRefused(reason)
        return caller

    async def _call(self, context: grpc.aio.ServicerContext, op: Operation, name: str,
                    action: Callable[[str], Awaitable[T]]) -> T:
        try:
            self._authorise(context, op, _name(name))
            return await action(name)
        except Exception as e:
            await _fail(context, op.value, e)

    async def Create(self, request: pb.CreateRequest, context: Any) -> pb.CreateResponse:
        info = await self._call(context, Operation.CREATE, request.name, self.toolstack.create)
        return pb.CreateResponse(domain=domain_to_pb(info))

    async def Start(self, request: pb.StartRequest, context: Any) -> pb.StartResponse:
        info = await self._call(context, Operation.START, request.name, self.toolstack.start)
        return pb.StartResponse(domain=domain_to_pb(info))

    async def Shutdown(self, request: pb.ShutdownRequest, context: Any) -> pb.ShutdownResponse:
        async def shutdown(name: str) -> None:
            await self.toolstack.shutdown(name, reboot=request.reboot,
                                          timeout=_timeout(request, 30.0))
        await self._call(context, Operation.SHUTDOWN, request.name, shutdown)
        return pb.ShutdownResponse()

    async def Destroy(self, request: pb.DestroyRequest, context: Any) -> pb.DestroyResponse:
        await self._call(context, Operation.DESTROY, request.name, self.toolstack.destroy)
        return pb.DestroyResponse()

    async def Pause(self, request: pb.PauseRequest, context: Any) -> pb.PauseResponse:
        await self._call(context, Operation.PAUSE, request.name, self.toolstack.pause)
        return pb.PauseResponse()

    async def Unpause(self, request: pb.UnpauseRequest, context: Any) -> pb.UnpauseResponse:
        await self._call(context, Operation.UNPAUSE, request.name, self.toolstack.unpause)
        return pb.UnpauseResponse()

    async def Get(self, request: pb.GetRequest, context: Any) -> pb.GetResponse:
        async def get(name: str) -> DomainInfo:
            return self.toolstack.get(name)
        info = await self._call(context, Operation.GET, request.name, get)
        return pb.GetResponse(domain=domain_to_pb(info))

    async def List(self, request: pb.ListRequest, context: Any) -> pb.ListResponse:
        try:
            caller = self._authorise(context, Operation.LIST)
            return pb.ListResponse(domains=[domain_to_pb(info) for info in self.toolstack.list()
                                            if auth.may_use(caller, info.users)])
        except Exception as e:
            await _fail(context, "list", e)

    async def Exec(self, request: pb.ExecRequest, context: Any) -> pb.ExecResponse:
        async def run(name: str) -> ExecResult:
            if not request.argv:
                raise BadRequest(f"exec in {name!r}: no command given")
            stdin = request.stdin if request.HasField("stdin") else None
            return await self.toolstack.exec(name, list(request.argv), stdin=stdin,
                                             timeout=_timeout(request, 60.0))
        result = await self._call(context, Operation.EXEC, request.name, run)
        return pb.ExecResponse(exit_code=result.returncode, stdout=result.stdout,
                               stderr=result.stderr)

    async def Up(self, request: pb.UpRequest, context: Any) -> pb.UpResponse:
        try:
            self._authorise(context, Operation.UP)
            infos = await self.toolstack.up()
            return pb.UpResponse(domains=[domain_to_pb(info) for info in infos])
        except Exception as e:
            await _fail(context, "up", e)

    async def Down(self, request: pb.DownRequest, context: Any) -> pb.DownResponse:
        try:
            self._authorise(context, Operation.DOWN)
            await self.toolstack.down()
            return pb.DownResponse()
        except Exception as e:
            await _fail(context, "down", e)

    async def ProviderStatus(self, request: pb.ProviderStatusRequest,
                             context: Any) -> pb.ProviderStatusResponse:
        try:
            self._authorise(context, Operation.PROVIDER_STATUS)
            try:
                status = await asyncio.to_thread(describe, TrustStore(self.provider_dir))
            except (OSError, ValueError) as e:   # TrustError is a ValueError
                raise ToolstackError(f"sys-sec's trust store {self.provider_dir}: {e}") from None
            return pb.ProviderStatusResponse(status_json=json.dumps(status))
        except Exception as e:
            await _fail(context, "provider status", e)

    async def _updates(self, context: Any, op: Operation, name: str,
                       updates: Callable[[], AsyncIterator[dict[str, Any]]]
                       ) -> AsyncIterator[pb.ScanUpdate]:
        try:
            self._authorise(context, op, _name(name))
            async for update in updates():
                yield _update_to_pb(update)
        except Exception as e:
            await _fail(context, op.value, e)

    # grpc.aio serves a stream only from an async generator function itself
    async def Scan(self, request: pb.ScanRequest, context: Any) -> AsyncIterator[pb.ScanUpdate]:
        async for update in self._updates(
                context, Operation.SCAN, request.name, lambda: self.toolstack.scan(
                    request.name, list(request.paths), apply_policy=not request.no_policy)):
            yield update

    async def Recover(self, request: pb.RecoverRequest,
                      context: Any) -> AsyncIterator[pb.ScanUpdate]:
        async for update in self._updates(
                context, Operation.RECOVER, request.name,
                lambda: self.toolstack.recover_domain(request.name, request.action)):
            yield update

    async def Events(self, request: pb.EventsRequest,
                     context: Any) -> AsyncIterator[pb.DomainEvent]:
        try:
            caller = self._authorise(context, Operation.EVENTS)
            events = aiter(self.toolstack.subscribe())
            pending = asyncio.ensure_future(anext(events))
        except Exception as e:
            await _fail(context, "events", e)
        try:
            # One turn of the loop runs the subscription up to its first wait, so it is
            # registered before the headers tell the client that the stream is live.
            await asyncio.sleep(0)
            await context.send_initial_metadata(())
            while True:
                event = await pending
                pending = asyncio.ensure_future(anext(events))
                spec = self.toolstack.specs.get(event.domain)
                if auth.may_use(caller, tuple(spec.users) if spec else None):
                    yield event_to_pb(event)
        except Exception as e:
            await _fail(context, "events", e)
        finally:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
            if hasattr(events, "aclose"):
                await events.aclose()


def _update_to_pb(update: dict[str, Any]) -> pb.ScanUpdate:
    (kind, value), = update.items()
    return pb.ScanUpdate(**{f"{kind}_json": json.dumps(value, separators=(",", ":"))})


class SecurityRelay(sec_pb_grpc.SecurityServiceServicer):
    """sys-sec's SecurityService on the control socket: each call is authorised as the
    control API's are (auth.read_refusal) and answered from sys-sec's own socket
    (`upstream`, root's only), with only the records of the domains the caller may read."""

    def __init__(self, toolstack: Toolstack, callers: Callers, upstream: Path) -> None:
        self.toolstack = toolstack
        self._callers = callers
        self.upstream = upstream

    def _scope(self, context: grpc.aio.ServicerContext, op: Operation,
               domain: str = "") -> frozenset[str] | None:
        """The domains whose records the caller is shown; None: every record."""
        caller = _caller(self._callers, context)
        users: Mapping[str, tuple[str, ...]] = {
            name: tuple(spec.users) for name, spec in self.toolstack.specs.items()}
        reason = auth.read_refusal(caller, op, domain or None, users)
        if reason is not None:
            raise PermissionRefused(reason)
        return None if domain else auth.readable_domains(caller, users)

    @contextlib.asynccontextmanager
    async def _stub(self) -> AsyncIterator[sec_pb_grpc.SecurityServiceStub]:
        async with grpc.aio.insecure_channel(f"unix:{self.upstream}") as channel:
            yield sec_pb_grpc.SecurityServiceStub(channel)

    async def _fail(self, context: grpc.aio.ServicerContext, method: str,
                    error: Exception) -> NoReturn:
        """sys-sec's own answer goes to the caller as it is; not reaching sys-sec is the
        platform's state, said as such."""
        if isinstance(error, grpc.aio.AioRpcError):
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                await context.abort(error.code(), error.details() or error.code().name)
            error = ToolstackError(f"sys-sec's SecurityService does not answer at "
                                   f"{self.upstream}: is sys-sec running? (`hyperwall up` "
                                   "starts it)")
        await _fail(context, method, error)

    async def _relayed(self, context: grpc.aio.ServicerContext, op: Operation, domain: str,
                       stream: Callable[[sec_pb_grpc.SecurityServiceStub], AsyncIterator[R]],
                       domain_of_item: Callable[[R], str | None]) -> AsyncIterator[R]:
        """sys-sec's stream, each item passed on only if the caller may read its domain's."""
        try:
            scope = self._scope(context, op, domain)
            async with self._stub() as stub:
                async for item in stream(stub):
                    if scope is None or domain_of_item(item) in scope:
                        yield item
        except Exception as e:
            await self._fail(context, op.value, e)

    # Async generators themselves: grpc.aio runs a handler that is not one on a thread.
    async def StreamAlerts(self, request: sec_pb.StreamAlertsRequest,
                           context: Any) -> AsyncIterator[sec_pb.Alert]:
        async for alert in self._relayed(context, Operation.ALERTS, request.domain,
                                         lambda stub: stub.StreamAlerts(request),
                                         lambda a: a.domain):
            yield alert

    async def StreamEvents(self, request: sec_pb.StreamEventsRequest,
                           context: Any) -> AsyncIterator[sec_pb.EveRecord]:
        async for record in self._relayed(context, Operation.REPORT, request.domain,
                                          lambda stub: stub.StreamEvents(request),
                                          lambda r: domain_of(json.loads(r.eve_json))):
            yield record

    async def GetStats(self, request: sec_pb.GetStatsRequest, context: Any) -> sec_pb.Stats:
        try:
            self._scope(context, Operation.STATS)
            async with self._stub() as stub:
                return await stub.GetStats(request)
        except Exception as e:
            await self._fail(context, "stats", e)

    async def Reload(self, request: sec_pb.ReloadRequest,
                     context: Any) -> sec_pb.ReloadReply:
        try:
            self._scope(context, Operation.RELOAD)
            async with self._stub() as stub:
                return await stub.Reload(request)
        except Exception as e:
            await self._fail(context, "reload", e)


@dataclass
class ControlServer:
    """The running API: the gRPC server on the internal socket and the public proxy."""

    grpc_server: grpc.aio.Server
    proxy: CredentialProxy
    health: health.aio.HealthServicer
    internal_socket: Path

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.proxy.stop()
        await self.grpc_server.stop(grace)
        self.internal_socket.unlink(missing_ok=True)


async def serve(toolstack: Toolstack, socket_path: Path = DEFAULT_SOCKET, *,
                owner_group: str = auth.OWNER_GROUP,
                sys_sec_dir: Path = DEFAULT_SYS_SEC_DIR) -> ControlServer:
    """Serve the control API on `socket_path` (mode 0666: every call is authorised from the
    caller's credentials), with gRPC health checking and reflection, until `stop()`; and
    sys-sec's SecurityService, relayed from its socket in `sys_sec_dir` (on the host).

    gRPC itself listens in `<socket_path>.d/` (mode 0700, root only) beside it.
    """
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    internal_dir = socket_path.with_name(socket_path.name + ".d")
    internal_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(internal_dir, 0o700)  # also when it existed with looser permissions
    internal_socket = internal_dir / "grpc.sock"
    auth.check_socket_path(internal_socket)
    internal_socket.unlink(missing_ok=True)

    proxy = CredentialProxy(socket_path, internal_socket, internal_dir)

    def callers(peer: str) -> Caller | None:
        cred = proxy.lookup(peer)
        return auth.resolve_caller(cred, owner_group) if cred is not None else None

    server = grpc.aio.server()
    pb_grpc.add_ControlServiceServicer_to_server(
        ControlServicer(toolstack, callers, sys_sec_dir / "provider"), server)
    sec_pb_grpc.add_SecurityServiceServicer_to_server(
        SecurityRelay(toolstack, callers, sys_sec_dir / "security.sock"), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, SECURITY_SERVICE_NAME,
         health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server)
    if server.add_insecure_port(f"unix:{internal_socket}") == 0:
        raise OSError(f"cannot listen on {internal_socket}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    try:
        await proxy.start()
    except BaseException:
        await server.stop(None)
        raise
    log.info("control API on %s", socket_path)
    return ControlServer(server, proxy, health_servicer, internal_socket)
