"""`hyperwall.netsec.v1.SecurityService`, served by sys-sec's controller on a Unix socket in
its folder: dom0 (the owner) reaches it there; no guest has a path to it."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from netsec import evelog
from netsec.report import parse_since
from proto.gen.hyperwall.netsec.v1 import security_pb2 as pb
from proto.gen.hyperwall.netsec.v1 import security_pb2_grpc as pb_grpc

log = logging.getLogger("hyperwall.security")


def to_alert(record: dict) -> pb.Alert:
    return pb.Alert(**evelog.alert_fields(record), eve_json=json.dumps(record))


class SecurityServicer(pb_grpc.SecurityServiceServicer):
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    async def StreamAlerts(self, request: pb.StreamAlertsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Alert]:
        try:
            since = parse_since(request.since, dt.datetime.now(dt.UTC)) if request.since \
                else None
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"since: {e}")
        domain = request.domain or None
        # Start following before reading the past, so nothing falls between the two.
        new = evelog.Follower(self.log_dir) if request.follow else None
        for record in evelog.timeline(r for r in evelog.read_events(self.log_dir)
                                      if evelog.is_alert(r, domain, since)):
            yield to_alert(record)
        if new is not None:
            async for record in new.records():
                if evelog.is_alert(record, domain, None):
                    yield to_alert(record)

    async def StreamEvents(self, request: pb.StreamEventsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.EveRecord]:
        for record in evelog.read_events(self.log_dir):
            if evelog.concerns(record, request.domain or None):
                yield pb.EveRecord(eve_json=json.dumps(record))


async def serve(log_dir: Path, socket_path: Path) -> grpc.aio.Server:
    socket_path.unlink(missing_ok=True)
    server = grpc.aio.server()
    pb_grpc.add_SecurityServiceServicer_to_server(SecurityServicer(log_dir), server)
    if server.add_insecure_port(f"unix:{socket_path}") == 0:
        raise OSError(f"cannot listen on {socket_path}")
    await server.start()
    os.chmod(socket_path, 0o600)
    log.info("SecurityService on %s", socket_path)
    return server
