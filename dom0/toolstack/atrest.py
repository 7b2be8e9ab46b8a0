"""Files at rest and recovery: dom0 shows sys-sec what a domain wrote, sys-sec scans it,
and dom0 applies the owner's `on_infection` (or `hyperwall recover`'s action).

A scan: the domain's writable layer (the ns backend's overlay upperdir) is attached
read-only in sys-sec's mount namespace only (dom0.scanview), sys-sec runs
`domains.syssec.treescan` on it with its scanners, writing EVE records to its own log
(`scan.json`, which `hyperwall alerts` and `report` read), and the view is taken away
when the scan ends, however it ends. The domain sees nothing of it.

Recovery, every step an event dom0 records (EventKind.RECOVERY):
- quarantine: the domain is paused (so it cannot swap a path while dom0 takes the file),
  each infected file moved into dom0's quarantine (dom0.quarantine), the domain unpaused.
- offline: the domain's network policy becomes `offline` at once, on every vif sys-sec
  serves it (the key sys-sec's controller watches), and stays so until dom0d restarts.
- reset: the domain is stopped, its layer set aside, the `persist` entries of the old
  layer scanned; what is clean is copied into a fresh layer (only what was scanned: its
  hash is checked again on the copy), what is not goes to quarantine; the rest of the old
  layer is discarded (the event says how much) and the domain started from its template.

Updates streamed to the caller are dicts: {"progress": ...}, {"record": ...},
{"step": ...}, and last {"result": ...}.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dom0 import layout, scanview
from dom0.config import ON_INFECTION, DomainSpec, PersistEscape, persist_path
from dom0.model import DomainState, EventKind, InvalidState, ToolstackError
from dom0.quarantine import Quarantine, QuarantineError
from dom0.toolstack.domains import Domain, Registry
from dom0.toolstack.events import Events
from dom0.toolstack.lifecycle import Lifecycle
from netsec.filescan import Finding

log = logging.getLogger("hyperwall.toolstack")
# sys-sec's log folder as sys-sec sees it (the ns backend's SHARED_DIR_INSIDE/log)
SYS_SEC_LOG_DIR = "/var/lib/hyperwall/log"
REPO = Path(__file__).resolve().parents[2]
IN_FLIGHT_QUIET = 60.0     # seconds: one on_infection per domain for a burst of alerts
IN_FLIGHT_POLL = 1.0
SCHEDULE_TICK = 30.0       # seconds between looks at which scheduled scans are due
ACTIONS = tuple(a for a in ON_INFECTION if a != "alert")
Update = dict[str, Any]


@dataclass(frozen=True)
class Scanners:
    """sys-sec's scanners, as paths inside sys-sec."""

    clamd_socket: str | None = "/var/lib/hyperwall/run/clamd.sock"
    yara_dir: str | None = None
    log_dir: str = SYS_SEC_LOG_DIR


@dataclass
class Found:
    path: str
    sha256: str
    findings: list[Finding] = field(default_factory=list)


@dataclass
class ScanOutcome:
    domain: str
    scan_id: str
    files: int = 0
    errors: int = 0
    infected: dict[str, Found] = field(default_factory=dict)
    # per path the scan looked at: (verdict, sha256)
    verdicts: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def take(self, record: dict[str, Any]) -> None:
        hw = record.get("hyperwall") or {}
        path, sha = str(hw.get("path", "")), hw.get("sha256")
        if record.get("event_type") == "fileinfo" and path:
            self.verdicts[path] = (str(hw.get("verdict", "error")), sha)
        elif record.get("event_type") == "alert" and path:
            found = self.infected.setdefault(path, Found(path, str(sha)))
            found.findings.append(Finding(str(hw.get("scanner", "")),
                                          str(hw.get("finding", ""))))
        elif record.get("event_type") == "scan":
            scan = record.get("scan") or {}
            self.files, self.errors = int(scan.get("files", 0)), int(scan.get("errors", 0))

    def as_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "scan_id": self.scan_id, "files": self.files,
                "errors": self.errors,
                "infected": [{"path": f.path, "sha256": f.sha256,
                              "findings": [dataclasses.asdict(x) for x in f.findings]}
                             for f in self.infected.values()]}


class InFlight:
    """Which in-flight verdicts call for the owner's on_infection (pure): an engine alert
    saying a file going to a domain was infected (the `scan` object sys-sec's file hold
    adds), for a domain whose policy is not just `alert`; at most once per domain every
    `quiet` seconds, since one download may raise several alerts."""

    def __init__(self, quiet: float = IN_FLIGHT_QUIET) -> None:
        self.quiet = quiet
        self._last: dict[str, float] = {}

    def action(self, record: dict[str, Any], specs: dict[str, DomainSpec], now: float
               ) -> tuple[str, str] | None:
        if record.get("event_type") != "alert":
            return None
        scan = record.get("scan")
        if not isinstance(scan, dict) or scan.get("outcome") != "infected":
            return None
        hw = record.get("hyperwall") or {}
        if hw.get("source") == "at-rest":
            return None       # a scan's own finding: the scan applies the policy itself
        name = str(hw.get("domain") or "")
        spec = specs.get(name)
        if spec is None or spec.is_sys_sec or spec.on_infection == "alert":
            return None
        if now - self._last.get(name, -self.quiet) < self.quiet:
            return None
        self._last[name] = now
        return name, spec.on_infection


class AtRest:
    def __init__(self, registry: Registry, events: Events, lifecycle: Lifecycle,
                 quarantine_dir: Path, scanners: Scanners = Scanners()) -> None:
        self.registry = registry
        self.events = events
        self.lifecycle = lifecycle
        self.quarantine_dir = quarantine_dir
        self.scanners = scanners
        self._busy: set[str] = set()
        self._schedule: asyncio.Task[None] | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._last: dict[str, float] = {}

    # -- in-flight verdicts ---------------------------------------------------------------

    async def watch_in_flight(self, log_dir: Path) -> None:
        """Apply on_infection when sys-sec's engine finds an infected file on its way to a
        domain (its alerts in `log_dir`, followed from now on)."""
        from netsec.evelog import Follower
        debounce = InFlight()
        while not log_dir.is_dir():      # sys-sec makes it when it first starts
            await asyncio.sleep(IN_FLIGHT_POLL)
        async for record in Follower(log_dir).records():
            todo = debounce.action(record, self.registry.specs, time.monotonic())
            if todo is None or todo[0] in self._busy:
                continue
            name, action = todo
            self._note(EventKind.RECOVERY, name, f"{action}: an infected file was stopped on "
                       f"its way to {name} ({record.get('alert', {}).get('signature', '')})")
            try:
                updates = self.scan(name) if action == "quarantine" else self.recover(
                    name, action)
                async for _ in updates:
                    pass
            except ToolstackError as e:
                self._note(EventKind.RECOVERY, name, f"{action} not done: {e}")
            except Exception:
                log.exception("on_infection of %s failed", name)

    def start_in_flight(self, log_dir: Path) -> None:
        if self._in_flight is None:
            self._in_flight = asyncio.get_running_loop().create_task(
                self.watch_in_flight(log_dir))

    # -- the schedule ---------------------------------------------------------------------

    def due(self, now: float) -> list[str]:
        """The domains whose scan_every has passed since their last scheduled scan (since
        dom0d started, for the first), that run or are created, and are not busy."""
        out = []
        for name, spec in self.registry.specs.items():
            if spec.scan_every is None or spec.is_sys_sec or name in self._busy:
                continue
            last = self._last.setdefault(name, now)
            if now - last >= spec.scan_every and name in self.registry.domains:
                out.append(name)
        return out

    async def run_schedule(self, tick: float = SCHEDULE_TICK) -> None:
        while True:
            await asyncio.sleep(tick)
            for name in self.due(time.monotonic()):
                self._last[name] = time.monotonic()
                try:
                    async for _ in self.scan(name):
                        pass
                except ToolstackError as e:
                    self._note(EventKind.SCAN, name, f"scheduled scan not done: {e}")
                except Exception:
                    log.exception("scheduled scan of %s failed", name)

    def start_schedule(self, tick: float = SCHEDULE_TICK) -> None:
        if self._schedule is None:
            self._schedule = asyncio.get_running_loop().create_task(self.run_schedule(tick))

    async def close(self) -> None:
        for task in (self._schedule, self._in_flight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._schedule = self._in_flight = None

    # -- where things are -----------------------------------------------------------------

    def _layer(self, spec: DomainSpec) -> Path:
        backend = self.registry.backend(spec)
        layer_of = getattr(backend, "writable_layer", None)
        if layer_of is None:
            raise ToolstackError(f"{spec.name}: the {spec.backend} backend cannot show "
                                 "sys-sec what the domain wrote")
        layer: Path = layer_of(spec)
        return layer

    def _sys_sec(self) -> tuple[Domain, int]:
        sys_sec = self.registry.sys_sec()
        if sys_sec is None or sys_sec.state is not DomainState.RUNNING:
            raise InvalidState(f"{self.registry.sys_sec_spec().name} is not running; it is "
                               "what scans")
        backend = self.registry.backend(sys_sec.spec)
        pid_of = getattr(backend, "namespace_pid", None)
        if pid_of is None or not hasattr(backend, "exec_command"):
            raise ToolstackError(f"sys-sec's {sys_sec.spec.backend} backend cannot be shown "
                                 "a domain's files")
        return sys_sec, int(pid_of(sys_sec.handle))

    def _note(self, kind: EventKind, name: str, detail: str) -> None:
        dom = self.registry.domains.get(name)
        self.events.note(kind, name, dom.domid if dom else None, detail)

    def _step(self, name: str, action: str, detail: str, **extra: Any) -> Update:
        self._note(EventKind.RECOVERY, name, f"{action}: {detail}")
        return {"step": {"domain": name, "action": action, "detail": detail, **extra}}

    @contextlib.asynccontextmanager
    async def _exclusive(self, name: str) -> AsyncIterator[None]:
        # one scan or recovery per domain at a time: a reset under a running scan would
        # pull the layer from under it
        if name in self._busy:
            raise InvalidState(f"{name} is being scanned or recovered already")
        self._busy.add(name)
        try:
            yield
        finally:
            self._busy.discard(name)

    def _guest(self, name: str) -> DomainSpec:
        spec = self.registry.spec(name)
        if spec.is_sys_sec:
            raise InvalidState(f"{name} is the security domain; it scans, it is not scanned")
        return spec

    # -- scanning -------------------------------------------------------------------------

    async def scan(self, name: str, paths: Sequence[str] = (), *,
                   apply_policy: bool = True) -> AsyncIterator[Update]:
        spec = self._guest(name)
        async with self._exclusive(name):
            outcome: ScanOutcome | None = None
            async for update in self._scan_layer(spec, self._layer(spec), paths):
                if "result" in update:
                    outcome = update.pop("outcome")
                yield update
            assert outcome is not None
            if outcome.infected and apply_policy and spec.on_infection != "alert":
                async for update in self._recover(spec, spec.on_infection, outcome):
                    yield update

    async def _scan_layer(self, spec: DomainSpec, layer: Path, paths: Sequence[str],
                          what: str = "scan") -> AsyncIterator[Update]:
        name = spec.name
        if not layer.is_dir():
            raise InvalidState(f"{name} has written nothing yet (no writable layer at "
                               f"{layer}; it is made when the domain is first created)")
        sys_sec, pid = self._sys_sec()
        scan_id = uuid.uuid4().hex[:12]
        outcome = ScanOutcome(name, scan_id)
        self._note(EventKind.SCAN, name, f"{what} {scan_id} started"
                   + (f" ({', '.join(paths)})" if paths else ""))
        view = await scanview.show(pid, layer, scan_id)
        try:
            argv = [sys.executable, "-m", "domains.syssec.treescan", str(view), *paths,
                    "--domain", name, "--log-dir", self.scanners.log_dir,
                    "--scan-id", scan_id]
            if self.scanners.clamd_socket:
                argv += ["--clamd", self.scanners.clamd_socket]
            if self.scanners.yara_dir:
                argv += ["--yara", self.scanners.yara_dir]
            backend = self.registry.backend(sys_sec.spec)
            cmd, env = backend.exec_command(sys_sec.handle, argv)  # type: ignore[attr-defined]
            # sys-sec sees this checkout read-only at the same path (the ns backend binds it)
            env = {**env, "PYTHONPATH": str(REPO)}
            proc = await asyncio.create_subprocess_exec(
                *cmd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            assert proc.stdout is not None and proc.stderr is not None
            errors = asyncio.ensure_future(proc.stderr.read())
            try:
                while line := await proc.stdout.readline():
                    try:
                        update = json.loads(line)
                    except ValueError:
                        continue
                    if "record" in update:
                        outcome.take(update["record"])
                        if update["record"].get("event_type") == "alert":
                            hw = update["record"]["hyperwall"]
                            self._note(EventKind.SCAN, name, f"{what} {scan_id} found "
                                       f"{hw.get('finding')} in {hw.get('path')}")
                    yield update
                rc = await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            stderr = (await errors).decode(errors="replace").strip()
            if rc != 0:
                self._note(EventKind.SCAN, name, f"{what} {scan_id} failed: {stderr}")
                raise ToolstackError(f"scan of {name} failed in sys-sec: "
                                     f"{stderr or f'exit code {rc}'}")
        finally:
            try:
                await scanview.hide(pid, view)
            except scanview.ScanViewError as e:
                log.error("%s: could not take scan view %s away: %s", name, view, e)
        self._note(EventKind.SCAN, name, f"{what} {scan_id} finished: {outcome.files} files, "
                   f"{len(outcome.infected)} infected, {outcome.errors} unscannable")
        yield {"result": outcome.as_json(), "outcome": outcome}

    # -- recovery -------------------------------------------------------------------------

    async def recover(self, name: str, action: str = "") -> AsyncIterator[Update]:
        spec = self._guest(name)
        action = action or spec.on_infection
        if action not in ACTIONS:
            raise InvalidState(f"{name}: recover needs an action ({', '.join(ACTIONS)}); "
                               f"its on_infection is {spec.on_infection!r}")
        async with self._exclusive(name):
            outcome = None
            if action == "quarantine":
                # what to quarantine is what a scan finds now, not what one found earlier
                async for update in self._scan_layer(spec, self._layer(spec), ()):
                    if "result" in update:
                        outcome = update.pop("outcome")
                    yield update
            async for update in self._recover(spec, action, outcome):
                yield update

    async def _recover(self, spec: DomainSpec, action: str, outcome: ScanOutcome | None
                       ) -> AsyncIterator[Update]:
        if action == "offline":
            yield await self.offline(spec.name)
        elif action == "quarantine":
            assert outcome is not None
            async for update in self._quarantine(spec, outcome):
                yield update
        elif action == "reset":
            async for update in self._reset(spec):
                yield update

    async def offline(self, name: str) -> Update:
        reg = self.registry
        spec = reg.spec(name)
        reg.specs[name] = dataclasses.replace(spec, policy="offline")
        dom, sys_sec = reg.domains.get(name), reg.sys_sec()
        vifs = 0
        if dom is not None and sys_sec is not None:
            base = f"{layout.dom_path(sys_sec.domid)}/backend/vif/{dom.domid}"
            for devid in await reg.store.ls(base):
                be = f"{base}/{devid}"
                if await reg.store.write_if_exists(be, f"{be}/hyperwall/policy", "offline"):
                    vifs += 1
            await reg.store.write_if_exists(f"{layout.dom_path(dom.domid)}/hyperwall",
                                            f"{layout.dom_path(dom.domid)}/hyperwall/policy",
                                            "offline")
        return self._step(name, "offline", f"network policy {spec.policy} -> offline "
                          f"({vifs} vif{'s' if vifs != 1 else ''} changed)", vifs=vifs)

    async def _quarantine(self, spec: DomainSpec, outcome: ScanOutcome
                          ) -> AsyncIterator[Update]:
        name = spec.name
        # a running domain's files are taken through its merged root: overlayfs does not
        # notice a file removed from its upper layer behind its back
        live_root = getattr(self.registry.backend(spec), "live_root", None)
        tree = (live_root(spec) if live_root else None) or self._layer(spec)
        store = Quarantine(self.quarantine_dir)
        dom = self.registry.domains.get(name)
        paused = False
        if dom is not None and dom.state is DomainState.RUNNING:
            await self.lifecycle.set_paused(name, True)
            paused = True
            yield self._step(name, "quarantine", "paused while its files are taken")
        try:
            for found in outcome.infected.values():
                try:
                    source = persist_path(tree, name, found.path)
                    entry = await asyncio.to_thread(store.put, source, domain=name,
                                                    origin=found.path, findings=found.findings)
                except (PersistEscape, QuarantineError) as e:
                    yield self._step(name, "quarantine", f"{found.path} left in place: {e}",
                                     path=found.path, error=str(e))
                    continue
                sigs = ", ".join(f.signature for f in found.findings)
                yield self._step(name, "quarantine", f"{found.path} ({sigs}) moved to "
                                 f"quarantine as {entry.id}, sha256 {entry.sha256}",
                                 path=found.path, sha256=entry.sha256, id=entry.id)
        finally:
            if paused:
                await self.lifecycle.set_paused(name, False)
        if paused:
            yield self._step(name, "quarantine", "unpaused")

    async def _reset(self, spec: DomainSpec) -> AsyncIterator[Update]:
        name = spec.name
        layer = self._layer(spec)
        if spec.persist:
            self._sys_sec()   # what keeps the persist entries is a scan: refuse before stopping
        was_running = name in self.registry.domains
        if was_running:
            await self.lifecycle.destroy(name)
            yield self._step(name, "reset", "stopped")
        old = layer.with_name(f"upper.reset-{int(time.time())}")
        if layer.exists():
            os.rename(layer, old)
        layer.mkdir(mode=0o755, parents=True)
        yield self._step(name, "reset", "writable layer set aside; the domain starts from "
                         f"its template {spec.template!r}")
        try:
            kept = [e for e in spec.persist if (old / e).exists() or (old / e).is_symlink()]
            if kept and old.exists():
                async for update in self._restore(spec, old, layer, kept):
                    yield update
        except BaseException as e:
            # the old layer is the only copy of what was not yet judged: kept, and said where
            self._note(EventKind.RECOVERY, name, f"reset: failed ({e}); the old layer is kept "
                       f"at {old}, the domain left stopped")
            raise
        discarded = await asyncio.to_thread(_count_files, old)
        await asyncio.to_thread(shutil.rmtree, old, True)
        yield self._step(name, "reset", f"the rest of the old layer discarded ({discarded} "
                         "files)", discarded=discarded)
        if was_running:
            await self.lifecycle.start(name)
            yield self._step(name, "reset", "started again")

    async def _restore(self, spec: DomainSpec, old: Path, new: Path, entries: list[str]
                       ) -> AsyncIterator[Update]:
        """Scan the persist `entries` of the old layer; copy back what is clean,
        quarantine what is not (infected or unscannable: nobody vouched for it)."""
        name = spec.name
        outcome: ScanOutcome | None = None
        safe: list[str] = []
        for want in entries:
            try:
                persist_path(old, name, want)
                safe.append(want)
            except PersistEscape as e:
                yield self._step(name, "reset", f"persist entry not kept: {e}", entry=want)
        if not safe:
            return
        # the view's root is the old layer, moved aside; the domain is stopped
        async for update in self._scan_layer(spec, old, safe, what="persist scan"):
            if "result" in update:
                outcome = update.pop("outcome")
            yield update
        assert outcome is not None
        store = Quarantine(self.quarantine_dir)
        kept = 0
        for path, (verdict, sha) in sorted(outcome.verdicts.items()):
            src = old / path
            if verdict == "clean" and sha is not None:
                if await asyncio.to_thread(_copy_checked, old, new, PurePosixPath(path), sha):
                    kept += 1
                    continue
                verdict = "changed since its scan"
            findings = (outcome.infected[path].findings if path in outcome.infected
                        else [Finding("hyperwall", f"not kept: {verdict}")])
            try:
                entry = await asyncio.to_thread(store.put, src, domain=name, origin=path,
                                                findings=findings)
                yield self._step(name, "reset", f"{path} not kept ({verdict}): moved to "
                                 f"quarantine as {entry.id}", path=path, id=entry.id)
            except QuarantineError as e:
                yield self._step(name, "reset", f"{path} not kept ({verdict}) and not "
                                 f"quarantined: {e}", path=path, error=str(e))
        yield self._step(name, "reset", f"kept {kept} clean files of "
                         f"{', '.join(safe)}", kept=kept)


def _count_files(root: Path) -> int:
    if not root.exists():
        return 0
    return sum(len(files) for _, _, files in os.walk(root))


def _copy_checked(old: Path, new: Path, rel: PurePosixPath, sha256: str) -> bool:
    """Copy old/rel to new/rel (directories made as needed, no links followed), only if it
    still hashes to what was scanned."""
    src_dir = old
    for part in rel.parts[:-1]:
        src_dir = src_dir / part
        if src_dir.is_symlink() or not src_dir.is_dir():
            return False
    fd = os.open(old / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    finally:
        os.close(fd)
    if hashlib.sha256(data).hexdigest() != sha256:
        return False
    here, there = old, new
    for part in rel.parts[:-1]:      # folders made as the domain had them (owner, mode)
        here, there = here / part, there / part
        if not there.exists():
            dst = os.lstat(here)
            there.mkdir(mode=stat.S_IMODE(dst.st_mode))
            os.chown(there, dst.st_uid, dst.st_gid)
    dest = new / rel
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  stat.S_IMODE(st.st_mode))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]
    finally:
        os.close(out)
    os.chown(dest, st.st_uid, st.st_gid)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    return True
