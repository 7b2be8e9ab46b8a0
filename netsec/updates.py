"""Applying a provider's bundle in sys-sec: verify, stage, self-test, swap, and roll back on
failure. A refused bundle changes nothing and leaves an event saying why.

    bundles/<version>/     each applied bundle's files, as shipped
    bundles/current        -> the one in force (the engine loads bundles/current/rules,
    bundles/previous       -> the one before     the resolver bundles/current/lists)
    bundles/events.jsonl   one line per apply or refusal

The swap is one rename of a symlink; the running engine then reloads its rules in place,
keeping every flow (`hyperwall-ipsd` on SIGHUP), so an established flow loses nothing.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netsec.bundle import Bundle, BundleError, verify
from netsec.decode import Decoder
from netsec.engine import Engine, EngineConfig, Verdict
from netsec.flow import FlowConfig, FlowTable
from netsec.rules import load_rules
from netsec.trust import TrustStore

Reload = Callable[[], None]


@dataclass(frozen=True)
class Outcome:
    applied: bool
    version: int | None
    reason: str


def _benign_flow() -> list[bytes]:
    """A plain HTTP exchange no sane rule set drops: the self-test's traffic."""
    from scapy.layers.inet import IP, TCP  # only when a bundle is staged: it loads slowly
    c = lambda **kw: IP(src="10.137.0.2", dst="203.0.113.10") / TCP(  # noqa: E731
        sport=43210, dport=80, **kw)
    s = lambda **kw: IP(src="203.0.113.10", dst="10.137.0.2") / TCP(  # noqa: E731
        sport=80, dport=43210, **kw)
    req = b"GET / HTTP/1.1\r\nHost: selftest.example\r\nUser-Agent: hyperwall\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
    return [bytes(p) for p in (
        c(flags="S", seq=1), s(flags="SA", seq=100, ack=2), c(flags="A", seq=2, ack=101),
        c(flags="PA", seq=2, ack=101) / req, s(flags="PA", seq=101, ack=2 + len(req)) / resp)]


def self_test(rules_dir: Path) -> str | None:
    """None if the staged rules load and pass benign traffic; else what went wrong."""
    ruleset = load_rules(sorted(rules_dir.glob("*.rules")))
    if not ruleset.rules:
        return "no rule of the bundle loads"
    engine = Engine(ruleset.rules, FlowTable(FlowConfig(inline=True)),
                    EngineConfig(simulate_ips=True))
    decoder = Decoder()
    for i, raw in enumerate(_benign_flow()):
        pkt = decoder.decode(101, float(i), i, raw)
        if pkt is not None and engine.process(pkt) is not Verdict.ACCEPT:
            return f"the rules drop plain benign traffic (packet {i + 1} of the self-test)"
    return None


class Updater:
    def __init__(self, trust: TrustStore, bundles: Path, reload: Reload,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.trust = trust
        self.bundles = bundles
        self.reload = reload
        self.clock = clock
        bundles.mkdir(parents=True, exist_ok=True)

    def apply(self, data: bytes, source: str) -> Outcome:
        try:
            bundle = self._check(data)
            staged = self._stage(bundle)
        except BundleError as e:
            return self._event(Outcome(False, None, str(e)), source)
        previous = self._target("current")
        self._point("current", staged)
        if previous is not None:
            self._point("previous", previous)
        try:
            self.reload()
        except Exception as e:   # the engine refused the new rules: back to the old ones
            if previous is not None:
                self._point("current", previous)
            else:
                (self.bundles / "current").unlink(missing_ok=True)
            self.reload()
            return self._event(Outcome(False, bundle.version,
                                       f"the engine did not take it ({e}); rolled back"), source)
        self.trust.record_applied(bundle.version)
        return self._event(Outcome(True, bundle.version,
                                   f"applied bundle {bundle.version} of {bundle.provider}"),
                           source)

    def _check(self, data: bytes) -> Bundle:
        state = self.trust.load()
        if not state.enrolled:
            raise BundleError("no provider is enrolled (hyperwall provider enroll)")
        if state.revoked:
            raise BundleError(f"provider {state.provider!r} is revoked")
        return verify(data, self.trust.trusted_keys(), now=self.clock(),
                      min_version=state.last_version, threshold=state.threshold)

    def _stage(self, bundle: Bundle) -> Path:
        final = self.bundles / str(bundle.version)
        staging = self.bundles / f".staging-{bundle.version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for name, content in bundle.files.items():
                path = staging / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            (staging / "rules").mkdir(exist_ok=True)
            failed = self_test(staging / "rules")
            if failed:
                raise BundleError(f"self-test failed: {failed}")
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def _target(self, link: str) -> Path | None:
        path = self.bundles / link
        return path.resolve() if path.is_symlink() else None

    def _point(self, link: str, target: Path) -> None:
        tmp = self.bundles / f".{link}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.name)
        os.replace(tmp, self.bundles / link)

    def _event(self, outcome: Outcome, source: str) -> Outcome:
        with open(self.bundles / "events.jsonl", "a") as f:
            f.write(json.dumps({"time": time.time(), "source": source,
                                "applied": outcome.applied, "version": outcome.version,
                                "reason": outcome.reason}) + "\n")
        return outcome
