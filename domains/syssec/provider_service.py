"""`hyperwall.provider.v1.ProviderService`: the provider's channel into sys-sec, gRPC over
mutual TLS. The client certificate must chain to the provider CA the owner enrolled; every
call first checks the trust store, so `hyperwall provider revoke` cuts the provider off at
once, open connections included. Only sys-sec's content is within reach: the service has
no call that names a domain, and bundles are verified like any other (domains/syssec/updates.py).

The check on every call is cheap: the trust store's state is re-read only when its file
changed (the store replaces it by rename, so a new inode or mtime says so).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from domains.syssec.updates import INVALID, Updater
from netsec import evelog
from netsec.bundle import MAX_BUNDLE
from netsec.trust import TrustError, TrustState, TrustStore
from proto.gen.hyperwall.provider.v1 import provider_pb2 as pb
from proto.gen.hyperwall.provider.v1 import provider_pb2_grpc as pb_grpc

log = logging.getLogger("hyperwall.provider")
SERVICE = "hyperwall.provider.v1.ProviderService"
# What a call may make sys-sec hold: one bundle per message (the field's tag and length
# add a few bytes; the slack lets verify name a bundle just over its limit, beyond it gRPC
# answers RESOURCE_EXHAUSTED unread), a few calls at a time, a bounded disabled list.
MAX_MESSAGE = MAX_BUNDLE + (64 << 10)
MAX_CALLS = 4
MAX_DISABLED = 4096


def server_identity(folder: Path, name: str = "sys-sec") -> tuple[bytes, bytes]:
    """sys-sec's own certificate and key for the channel, made once and kept."""
    cert, key = folder / "server.pem", folder / "server.key"
    if not cert.exists() or not key.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                       .public_key(private.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - dt.timedelta(minutes=5))
                       .not_valid_after(now + dt.timedelta(days=3650))
                       .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                       .sign(private, hashes.SHA256()))
        key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        key.chmod(0o600)
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert.read_bytes(), key.read_bytes()


class TrustCache:
    """The trust store's state, re-read only when its file is another one than last time."""

    def __init__(self, trust: TrustStore) -> None:
        self.trust = trust
        self._stamp: tuple[int, int, int] | None = None
        self._state = TrustState()

    def state(self) -> TrustState:
        try:
            st = self.trust.state_file.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp is None or stamp != self._stamp:
            # A store that cannot be read admits nobody (TrustError goes to the caller).
            self._state = self.trust.load()
            self._stamp = stamp
        return self._state


class ProviderServicer(pb_grpc.ProviderServiceServicer):
    def __init__(self, trust: TrustStore, updater: Updater, log_dir: Path,
                 engine_state: Callable[[], str], rules_changed: Callable[[], None]) -> None:
        self.trust = trust
        self.cache = TrustCache(trust)
        self.updater = updater
        self.log_dir = log_dir
        self.engine_state = engine_state
        self.rules_changed = rules_changed

    async def _admit(self, context: grpc.aio.ServicerContext) -> TrustState:
        try:
            state = self.cache.state()
        except TrustError as e:
            log.error("provider refused: %s", e)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "sys-sec cannot read the owner's trust in this provider")
        if not state.enrolled or state.revoked:
            why = "revoked by the owner" if state.revoked else "not enrolled"
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"this provider is {why}")
        return state

    async def GetStatus(self, request: pb.GetStatusRequest,
                        context: grpc.aio.ServicerContext) -> pb.GetStatusResponse:
        state = await self._admit(context)
        status = self.updater.status()
        reply = pb.GetStatusResponse(provider=state.provider,
                                     bundle_version=status.version or 0,
                                     previous_version=status.previous or 0,
                                     engine=self.engine_state(),
                                     disabled_sids=sorted(state.disabled_sids))
        if status.applied_at is not None:
            reply.applied_at.FromNanoseconds(int(status.applied_at * 1e9))
        return reply

    async def GetAlertSummary(self, request: pb.GetAlertSummaryRequest,
                              context: grpc.aio.ServicerContext) -> pb.GetAlertSummaryResponse:
        state = await self._admit(context)
        if not state.share_alerts:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "the owner has not shared alerts with this provider")
        counts: Counter[tuple[int, str]] = Counter()
        for record in evelog.read_events(self.log_dir):
            if evelog.is_alert(record, None, None):
                a = evelog.alert_fields(record)
                counts[(a["signature_id"], a["signature"])] += 1
        return pb.GetAlertSummaryResponse(alerts=[
            pb.AlertCount(signature_id=sid, signature=sig, count=n)
            for (sid, sig), n in counts.most_common()])

    async def PushBundle(self, request: pb.PushBundleRequest,
                         context: grpc.aio.ServicerContext) -> pb.PushBundleResponse:
        await self._admit(context)
        outcome = await asyncio.to_thread(self.updater.apply, request.bundle, "provider push")
        if not outcome.applied:
            log.warning("bundle refused at %s: %s", outcome.step, outcome.reason)
            code = (grpc.StatusCode.INVALID_ARGUMENT if outcome.kind == INVALID
                    else grpc.StatusCode.FAILED_PRECONDITION)
            await context.abort(code, outcome.reason)
        log.info("%s", outcome.reason)
        return pb.PushBundleResponse(applied_version=outcome.version or 0,
                                     message=outcome.reason)

    async def SetRuleEnabled(self, request: pb.SetRuleEnabledRequest,
                             context: grpc.aio.ServicerContext) -> pb.SetRuleEnabledResponse:
        await self._admit(context)
        if request.sid == 0:
            log.warning("SetRuleEnabled refused: sid 0")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "sid 0 is not a rule")
        disabled = set(self.trust.load().disabled_sids)
        if not request.enabled and request.sid not in disabled \
                and len(disabled) >= MAX_DISABLED:
            why = (f"{MAX_DISABLED} sids are disabled already, the most sys-sec keeps; "
                   "enable some, or leave rules out of the bundle")
            log.warning("SetRuleEnabled refused: sid %d: %s", request.sid, why)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, why)
        (disabled.discard if request.enabled else disabled.add)(request.sid)
        self.trust.update(disabled_sids=sorted(disabled))
        try:
            await asyncio.to_thread(self.rules_changed)   # it waits for the engine
        except Exception as e:  # noqa: BLE001 - kept; the engine takes it at its next load
            what = f"sid {request.sid} {'enabled' if request.enabled else 'disabled'}"
            log.warning("%s, but the engine did not reload now: %s", what, e)
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"{what} from the next load on; the engine did not reload "
                                f"now: {e}")
        return pb.SetRuleEnabledResponse()


def _credentials(identity: tuple[bytes, bytes],
                 client_ca: Callable[[], bytes | None]) -> grpc.ServerCredentials:
    """Client certificates are checked against the CA enrolled *now*: the fetcher runs at
    each handshake, so enrolling another CA needs no restart. With none enrolled, sys-sec's
    own certificate stands in: it signed no client, so nobody gets in."""
    cert, key = identity
    seen: list[bytes | None] = [None]

    def config(ca: bytes | None) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(key, cert)], ca or cert)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        ca = client_ca()
        if ca == seen[0]:
            return None
        seen[0] = ca
        return config(ca)
    seen[0] = client_ca()
    return grpc.dynamic_ssl_server_credentials(config(seen[0]), fetch,
                                               require_client_authentication=True)


async def serve(servicer: ProviderServicer, address: str, identity: tuple[bytes, bytes],
                client_ca: Callable[[], bytes | None]) -> tuple[grpc.aio.Server, int]:
    """Listen on `address` (host:port; port 0 picks one); returns the server and its port."""
    credentials = _credentials(identity, client_ca)
    server = grpc.aio.server(maximum_concurrent_rpcs=MAX_CALLS, options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE)])
    pb_grpc.add_ProviderServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("ProviderService on %s (mutual TLS)", address)
    return server, port
