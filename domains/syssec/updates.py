"""Applying a provider's bundle in sys-sec: verify, stage, self-test, swap, and roll back on
failure. A refused bundle changes nothing (symlinks, trust store, running rules) and leaves
an event saying why.

    bundles/<version>/     each applied bundle's files, as shipped
    bundles/current        -> the one in force (the engine loads bundles/current/rules,
                              the resolver bundles/current/lists, clamd
                              bundles/current/clamav, the scanners bundles/current/yara)
    bundles/previous       -> the one before
    bundles/events.jsonl   one JSON line per apply or refusal, and one per fault found in
                           sys-sec's own state (step "state": a recorded version or a
                           bundle folder outside what the channel can carry)

A bundle's folder is written under a temporary name and renamed into place; the swap is
one rename of a symlink; the running engine then reloads its rules in place, keeping every
flow (`hyperwall-ipsd` on SIGHUP), so an established flow loses nothing. When the engine
does not take the new rules, both symlinks go back and the engine reloads the old ones.

A bundle's YARA rules are compiled and its ClamAV database loaded by a throwaway clamscan
while staged: either failing refuses the bundle, naming the file, before anything running
sees it; clamd is then told to RELOAD after the swap, and serves the old database until
the new one is in.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from domains.syssec.antivirus import (
    ClamavDatabaseError,
    YaraRulesError,
    check_database,
    compile_rules,
)
from netsec.bundle import MAX_VERSION, Bundle, BundleError, NotNow, verify
from netsec.staging import StagingError, build, builtin_case, bundle_cases, self_test
from netsec.trust import TrustError, TrustStore

log = logging.getLogger("hyperwall.updates")
Reload = Callable[[], None]
EVENTS = "events.jsonl"
# Outcome kinds: what the provider channel maps to a status code.
APPLIED = "applied"
INVALID = "invalid"     # the bundle itself is bad, whatever sys-sec's state
REFUSED = "refused"     # a good bundle sys-sec will not take now (replay, expiry, revoked...)


@dataclass(frozen=True)
class Outcome:
    applied: bool
    version: int | None
    reason: str
    kind: str = APPLIED
    step: str = ""          # where a refusal happened: trust, verify, stage, write, reload
    provider: str = ""
    source: str = ""
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Status:
    version: int | None     # of bundles/current; None before the first, or not a version
    applied_at: float | None
    previous: int | None
    problems: tuple[str, ...] = ()  # what of sys-sec's own state is unusable, by file


class _Refused(Exception):
    def __init__(self, kind: str, step: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.step, self.reason = kind, step, reason


class Updater:
    def __init__(self, trust: TrustStore, bundles: Path, reload: Reload,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.trust = trust
        self.bundles = bundles
        self.reload = reload
        self.clock = clock
        # One apply at a time: a push and the subscription must not interleave their flips.
        self._lock = threading.Lock()
        self._said: set[str] = set()    # state faults already written as events
        bundles.mkdir(parents=True, exist_ok=True)

    def apply(self, data: bytes, source: str = "provider") -> Outcome:
        with self._lock:
            bundle: Bundle | None = None
            try:
                bundle = self._verify(data)
                staged = self._stage(bundle)
                self._swap(bundle, staged)
            except _Refused as r:
                return self._event(Outcome(False, bundle.version if bundle else None, r.reason,
                                           r.kind, r.step,
                                           bundle.provider if bundle else "", source))
            return self._event(Outcome(True, bundle.version,
                                       f"applied bundle {bundle.version} of {bundle.provider}"
                                       + _scanner_content(bundle),
                                       APPLIED, "", bundle.provider, source))

    def status(self) -> Status:
        """What is in force. A link to a folder whose name is no version the channel can
        carry (an older release applied a signed 2**64) reads as None and is named in
        `problems`, with the trust store's own fault, each written once as an event."""
        problems = []
        try:
            problems.append(self.trust.version_problem(self.trust.load()))
        except TrustError as e:
            problems.append(f"the trust store: {e}")
        versions = {}
        for link in ("current", "previous"):
            target = self._target(link)
            versions[link] = _version(target)
            if target is not None and versions[link] is None:
                problems.append(f"{self.bundles / link} -> {target.name}: not a bundle "
                                f"version (1 to {MAX_VERSION}); reported as none")
        said = tuple(p for p in problems if p)
        for problem in said:
            if problem not in self._said:
                self._said.add(problem)
                log.error("%s", problem)
                self._event(Outcome(False, None, problem, REFUSED, "state"))
        current = self.bundles / "current"
        applied_at = current.lstat().st_mtime if current.is_symlink() else None
        return Status(versions["current"], applied_at, versions["previous"], said)

    def _verify(self, data: bytes) -> Bundle:
        try:
            state = self.trust.load()
            if not state.enrolled:
                raise _Refused(REFUSED, "trust",
                               "no provider is enrolled (hyperwall provider enroll)")
            if state.revoked:
                raise _Refused(REFUSED, "trust", f"provider {state.provider!r} is revoked "
                                                 "by the owner")
            if state.last_version is None:
                raise _Refused(REFUSED, "trust", self.trust.version_problem(state))
            keys = self.trust.trusted_keys()
        except TrustError as e:
            raise _Refused(REFUSED, "trust", f"the trust store: {e}") from None
        try:
            return verify(data, keys, now=self.clock(), min_version=state.last_version)
        except NotNow as e:     # sound, but not for sys-sec now: replay, expiry, its clock
            raise _Refused(REFUSED, "verify", str(e)) from None
        except BundleError as e:
            raise _Refused(INVALID, "verify", str(e)) from None
        except Exception as e:  # noqa: BLE001 - verify's own defect: refused and said so
            log.exception("verify raised what it never should")
            raise _Refused(INVALID, "verify", f"not a bundle sys-sec can read "
                                              f"({type(e).__name__}: {str(e)[:200]})") from None

    def _stage(self, bundle: Bundle) -> Path:
        """The bundle's files under a temporary folder, its rules staged and self-tested,
        then renamed to bundles/<version>."""
        final = self.bundles / str(bundle.version)
        if final in (self._target("current"), self._target("previous")):
            raise _Refused(REFUSED, "stage", f"{final} is in use (the trust store's applied "
                                             "version is behind the bundles folder)")
        staging = self.bundles / f".staging-{bundle.version}-{os.getpid()}"
        try:
            shutil.rmtree(staging, ignore_errors=True)
            try:
                for name, content in bundle.files.items():
                    path = staging / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                (staging / "rules").mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _Refused(REFUSED, "write", f"cannot write the bundle: {e}") from None
            try:
                disabled = frozenset(self.trust.load().disabled_sids)
                staged = build(bundle.version, staging / "rules", disabled=disabled)
                self_test(staged, [builtin_case(), *bundle_cases(staging, bundle.policy)])
                _check_scanners(staging)
            except (StagingError, YaraRulesError, ClamavDatabaseError) as e:
                raise _Refused(INVALID, "stage", str(e).replace(str(staging), "bundle")) \
                    from None
            except TrustError as e:
                raise _Refused(REFUSED, "trust", f"the trust store: {e}") from None
            except Exception as e:  # noqa: BLE001 - the bundle's captures broke the engine
                log.exception("staging bundle %d raised", bundle.version)
                raise _Refused(INVALID, "stage", f"self-test failed: the engine broke on the "
                                                 f"bundle ({type(e).__name__}: "
                                                 f"{str(e)[:200]})") from None
            try:
                shutil.rmtree(final, ignore_errors=True)  # a leftover of an earlier failure
                staging.rename(final)
            except OSError as e:
                raise _Refused(REFUSED, "write", f"cannot write the bundle: {e}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def _swap(self, bundle: Bundle, staged: Path) -> None:
        """Flip current (and previous) to the staged bundle, have the engine reload, record
        the version; if any of it fails, put both links back and reload the old rules."""
        old_current, old_previous = self._target("current"), self._target("previous")
        try:
            self._point("current", staged)
            if old_current is not None:
                self._point("previous", old_current)
            self.reload()
            self.trust.record_applied(bundle.version)
        except Exception as e:  # noqa: BLE001 - whatever failed, the old bundle goes back
            again = self._restore(old_current, old_previous)
            shutil.rmtree(staged, ignore_errors=True)
            raise _Refused(REFUSED, "reload", f"the engine did not take bundle "
                                              f"{bundle.version} ({e}); rolled back{again}") \
                from None

    def _restore(self, current: Path | None, previous: Path | None) -> str:
        """Both links as they were, and the engine reloaded on them; what went wrong again."""
        for link, target in (("current", current), ("previous", previous)):
            if target is None:
                (self.bundles / link).unlink(missing_ok=True)
            else:
                self._point(link, target)
        try:
            self.reload()
        except Exception as e:  # noqa: BLE001 - reported; the links are back regardless
            return f"; reloading the old rules failed too ({e})"
        return ""

    def _target(self, link: str) -> Path | None:
        path = self.bundles / link
        return self.bundles / os.readlink(path) if path.is_symlink() else None

    def _point(self, link: str, target: Path) -> None:
        tmp = self.bundles / f".{link}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.name)
        os.replace(tmp, self.bundles / link)

    def _event(self, outcome: Outcome) -> Outcome:
        record = {k: v for k, v in asdict(outcome).items() if v not in ("", None)
                  or k in ("version", "reason")}
        with open(self.bundles / EVENTS, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        return outcome


def _check_scanners(staging: Path) -> None:
    """The staged YARA rules compile, and the staged ClamAV database loads."""
    if (staging / "yara").is_dir():
        compile_rules(staging / "yara")
    if (staging / "clamav").is_dir():
        check_database(staging / "clamav")


def _scanner_content(bundle: Bundle) -> str:
    counts = {folder: sum(n.startswith(f"{folder}/") for n in bundle.files)
              for folder in ("clamav", "yara")}
    said = [f"{folder}: {n} file{'s' * (n != 1)}" for folder, n in counts.items() if n]
    return f" ({', '.join(said)})" if said else ""


def _version(path: Path | None) -> int | None:
    if path is None or not (path.name.isascii() and path.name.isdigit()) \
            or len(path.name) > 20:
        return None
    version = int(path.name)
    return version if 1 <= version <= MAX_VERSION else None
