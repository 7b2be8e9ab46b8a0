"""The console's only way to the platform: dom0d's control socket, through the stubs the CLI
uses (ControlService, and sys-sec's SecurityService relayed by dom0d), on a grpc.aio channel.

The console runs as root, so dom0d answers it as an owner: every answer here is the whole
platform's, and the web layer narrows it to the session's user with the control API's own
policy (dom0.api.auth) before anything reaches a page.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from dom0.api.convert import domain_from_pb, event_from_pb
from dom0.model import DomainInfo, EventKind
from proto.gen.hyperwall.control.v1 import control_pb2 as pb
from proto.gen.hyperwall.control.v1 import control_pb2_grpc as pb_grpc
from proto.gen.hyperwall.netsec.v1 import security_pb2 as sec_pb
from proto.gen.hyperwall.netsec.v1 import security_pb2_grpc as sec_pb_grpc

_ENDS = (EventKind.SHUTDOWN, EventKind.DESTROYED, EventKind.CRASHED)


class PlatformError(Exception):
    """dom0d (or sys-sec behind it) refused or failed a call: `code` is the gRPC status
    name, the message dom0d's own words for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _error(err: grpc.aio.AioRpcError, socket: Path) -> PlatformError:
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return PlatformError("UNAVAILABLE", f"cannot reach hyperwall-dom0d at {socket}")
    if err.code() == grpc.StatusCode.INTERNAL:
        return PlatformError("INTERNAL", "dom0d failed; its log has the details")
    return PlatformError(err.code().name, err.details() or err.code().name)


class Platform:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._channel = grpc.aio.insecure_channel(f"unix:{socket}")
        self.control = pb_grpc.ControlServiceStub(self._channel)
        self.security = sec_pb_grpc.SecurityServiceStub(self._channel)
        # When each domain was last seen starting (dom0d's events), for its uptime.
        self.started: dict[str, float] = {}

    async def close(self) -> None:
        await self._channel.close()

    async def domains(self) -> list[DomainInfo]:
        try:
            reply = await self.control.List(pb.ListRequest())
        except grpc.aio.AioRpcError as e:
            raise _error(e, self.socket) from None
        return [domain_from_pb(d) for d in reply.domains]

    async def act(self, action: str, name: str) -> None:
        """start | shutdown | destroy | reset (a disposable domain back to clean: destroyed,
        which drops its writable layer, then started again)."""
        try:
            if action == "start":
                await self.control.Start(pb.StartRequest(name=name))
            elif action == "shutdown":
                await self.control.Shutdown(pb.ShutdownRequest(name=name))
            elif action == "reset":
                await self.control.Destroy(pb.DestroyRequest(name=name))
                await self.control.Start(pb.StartRequest(name=name))
            else:
                raise ValueError(f"unknown action {action!r}")
        except grpc.aio.AioRpcError as e:
            raise _error(e, self.socket) from None

    async def alerts(self, domain: str = "", *, since: str = "",
                     follow: bool = False) -> AsyncIterator[sec_pb.Alert]:
        try:
            async for alert in self.security.StreamAlerts(sec_pb.StreamAlertsRequest(
                    domain=domain, since=since, follow=follow)):
                yield alert
        except grpc.aio.AioRpcError as e:
            raise _error(e, self.socket) from None

    async def eve(self, domain: str) -> list[dict[str, Any]]:
        try:
            return [json.loads(r.eve_json) async for r in
                    self.security.StreamEvents(sec_pb.StreamEventsRequest(domain=domain))]
        except grpc.aio.AioRpcError as e:
            raise _error(e, self.socket) from None

    async def provider_status(self) -> dict[str, Any]:
        try:
            reply = await self.control.ProviderStatus(pb.ProviderStatusRequest())
        except grpc.aio.AioRpcError as e:
            raise _error(e, self.socket) from None
        status: dict[str, Any] = json.loads(reply.status_json)
        return status

    async def follow_starts(self) -> None:
        """Keep `started` current from dom0d's events until cancelled (or dom0d goes)."""
        try:
            async for msg in self.control.Events(pb.EventsRequest()):
                event = event_from_pb(msg)
                if event.kind is EventKind.STARTED:
                    self.started[event.domain] = event.timestamp
                elif event.kind in _ENDS:
                    self.started.pop(event.domain, None)
        except grpc.aio.AioRpcError:
            return
