"""The `ns` backend: a domain is a set of Linux namespaces, a cgroup and an overlay root.

Each domain gets a named network namespace `hw-<domid>` (iproute2, so veths can be moved
into it and `ip netns exec` reaches it), and bubblewrap, run inside that netns, gives it
its own mount, PID, UTS (hostname = domain name) and IPC namespaces with `domains/init.py`
as PID 1. Its cgroup (`hyperwall/dom-<domid>`, v1 or v2) carries the memory, CPU and pids
limits and the freezer that pause uses. The root filesystem is an overlay of the
template (`builder/template.py`) and a per-domain writable layer; what else the domain
sees of the host is in `_ns_rootfs`.

The domain is started detached (`setsid --fork`), so it outlives a dom0d that is killed
and restarted; everything the backend needs afterwards is found again on the host: the
netns name, the cgroup, and bubblewrap's status file holding the init's pid and, once
it has ended, its exit code.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import sysconfig
import time
from pathlib import Path

from builder.template import build_template
from dom0.backends._ns_bytecode import ensure_bytecode
from dom0.backends._ns_cgroup import ROOT, CgroupError, DomainCgroup, Limits
from dom0.backends._ns_rootfs import (
    REPO,
    DomainDir,
    Status,
    bwrap_argv,
    mount_overlay,
    parse_status,
    unmount,
)
from dom0.backends.base import BackendError, DomainHandle, DomidInUse, ExecResult, RunState
from dom0.config import DomainSpec
from domains.init import LAUNCHED, NOT_LAUNCHED
from domains.runner import CommandError, run

NETNS_DIR = Path("/run/netns")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 10.0


def netns_name(domid: int) -> str:
    return f"hw-{domid}"


def domain_env(dom: DomainHandle) -> dict[str, str]:
    """The whole environment of what runs in a domain: nothing leaks in from dom0's."""
    return {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8",
            "HYPERWALL_DOMID": str(dom.domid), "HYPERWALL_NAME": dom.spec.name}


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # Field 5 is the mount point, with spaces and the like octal-escaped.
            point = line.split()[4].encode().decode("unicode_escape")
            if point == target:
                return True
    return False


class NsBackend:
    name = "ns"
    hypervisor_owned = False

    def __init__(self, state_dir: Path, *, templates_dir: Path | None = None,
                 agent_argv: list[str] | None = None, cgroup_root: Path = ROOT,
                 sys_sec_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        # Where sys-sec's SHARED_DIR_INSIDE lives on the host (dom0 reads its logs there).
        self.sys_sec_dir = sys_sec_dir or state_dir / "sys-sec"
        self.templates_dir = templates_dir or state_dir / "templates"
        # Without site (-S): the venv's site setup and the editable-install finder cost a
        # fifth of the agent's start; PYTHONPATH (set in `start`) names what it imports.
        self.agent_argv = agent_argv or [sys.executable, "-S", "-m", "domains.agent_start"]
        # The project's agent is preloaded by init and forked (domains/init.py): its
        # imports were most of a domain's start. Another command is run as it is.
        self.preload = agent_argv is None
        self.cgroup_root = cgroup_root
        self._bytecode_checked = False

    # -- where things are -------------------------------------------------------------

    def _record(self, domid: int) -> Path:
        return self.state_dir / "domids" / str(domid)

    def _recorded(self, dom: DomainHandle) -> tuple[str, str]:
        """(name, kind) the domain was created with. An orphan found after a dom0 crash
        comes with a made-up spec; this finds its real folder and whether its writable
        layer is data to keep."""
        try:
            name, kind = self._record(dom.domid).read_text().split()
            return name, kind
        except (FileNotFoundError, ValueError):
            return dom.spec.name, dom.spec.kind

    def _dir(self, dom: DomainHandle) -> DomainDir:
        return DomainDir(self.state_dir / "domains" / self._recorded(dom)[0])

    def _cgroup(self, dom: DomainHandle) -> DomainCgroup:
        return DomainCgroup(dom.domid, self.cgroup_root)

    def _status(self, dom: DomainHandle) -> Status:
        try:
            return parse_status(self._dir(dom).status.read_text())
        except FileNotFoundError:
            return Status()

    def _fail(self, dom: DomainHandle, step: str, why: object,
              kind: type[BackendError] = BackendError) -> BackendError:
        return kind(f"ns: domain {dom.spec.name} ({dom.domid}): {step}: {why}")

    def _template(self, dom: DomainHandle) -> Path:
        path = self.templates_dir / dom.spec.template
        if not path.is_dir():
            if dom.spec.template != "default":
                raise self._fail(dom, "template", f"{path} does not exist")
            try:
                build_template(path)
            except FileExistsError:
                pass  # another create built it meanwhile
        return path

    def _init_pid(self, dom: DomainHandle) -> int:
        """The running init's host pid, checked against the cgroup (pids get reused)."""
        pid = self._status(dom).init_pid
        if pid is None or pid not in self._cgroup(dom).pids():
            raise self._fail(dom, "init", "is not running")
        return pid

    # -- lifecycle --------------------------------------------------------------------

    async def create(self, dom: DomainHandle) -> None:
        if self._record(dom.domid).exists():
            raise self._fail(dom, "create", "already exists (destroy it first)")
        ns = netns_name(dom.domid)
        if self._foreign(dom):
            raise self._fail(dom, "create", f"netns {ns} or cgroup dom-{dom.domid} exists and "
                             "is not this backend's", DomidInUse)
        try:
            # Recorded first: whatever exists of the domain from here on, destroy finds it.
            self._record(dom.domid).parent.mkdir(parents=True, exist_ok=True)
            self._record(dom.domid).write_text(f"{dom.spec.name} {dom.spec.kind}\n")
        except OSError as e:
            raise self._fail(dom, "create", e) from None
        try:
            # The claim: `ip netns add` fails if the name exists, so of two platforms making
            # the same domid at once one gets it and the other backs off, its record undone
            # (a destroy now would take the winner's namespace and cgroup).
            await run(["ip", "netns", "add", ns])
        except CommandError as e:
            self._record(dom.domid).unlink(missing_ok=True)
            if (NETNS_DIR / ns).exists():
                raise self._fail(dom, "create", e, DomidInUse) from None
            raise self._fail(dom, "create", e) from None
        try:
            await run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self._cgroup(dom).create(Limits(dom.spec.memory_mb << 20, dom.spec.cpu_weight))
            self._template(dom)
            self._dir(dom).make()
        except (CommandError, CgroupError, OSError) as e:
            await self.destroy(dom)
            raise self._fail(dom, "create", e) from None

    async def start(self, dom: DomainHandle) -> None:
        state = await self.state(dom)
        if state not in (RunState.CREATED, RunState.SHUTDOWN, RunState.CRASHED):
            raise self._fail(dom, "start", f"cannot start a domain that is {state.value}")
        d = self._dir(dom)
        cg = self._cgroup(dom)
        if not self._bytecode_checked:
            # Concurrent first starts each check; the module's lock makes it one compile.
            await asyncio.to_thread(ensure_bytecode)
            self._bytecode_checked = True
        try:
            d.make()
            dom.xenstore_dir.mkdir(parents=True, exist_ok=True)
            if dom.spec.is_sys_sec:
                self.sys_sec_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not mounted(d.root):
                mount_overlay(self._template(dom), d)
            (d.path / "stopped").unlink(missing_ok=True)
            console_start = d.console.stat().st_size if d.console.exists() else 0
            status_fd = os.open(d.status, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            console_fd = os.open(d.console, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except (CommandError, OSError) as e:
            raise self._fail(dom, "start", e) from None
        env = {**domain_env(dom), "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}"}
        argv = cg.joined([
            "setsid", "--fork", "ip", "netns", "exec", netns_name(dom.domid),
            *bwrap_argv(root=d.root, hostname=dom.spec.name, xenstore_dir=dom.xenstore_dir,
                        status_fd=status_fd, env=env,
                        command=[*(["--preload"] if self.preload else []), *self.agent_argv],
                        shared_dir=self.sys_sec_dir if dom.spec.is_sys_sec else None)])
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=console_fd, stderr=console_fd,
                pass_fds=(status_fd,))
            if await proc.wait() != 0:
                raise self._fail(dom, "start", f"setsid exited with {proc.returncode}")
        except OSError as e:
            raise self._fail(dom, "start", f"cannot run {argv[0]}: {e}") from None
        finally:
            os.close(status_fd)
            os.close(console_fd)
        await self._wait_started(dom, console_start)

    async def _wait_started(self, dom: DomainHandle, console_start: int) -> None:
        d = self._dir(dom)
        deadline = time.monotonic() + START_TIMEOUT
        # init says when it launched the agent; the file is the only signal across the detach.
        while True:
            with open(d.console, "rb") as f:
                f.seek(console_start)
                said = f.read()
            if LAUNCHED.encode() in said or NOT_LAUNCHED.encode() in said:
                return
            status = self._status(dom)
            if status.exit_code is not None or time.monotonic() > deadline:
                why = (f"exited with {status.exit_code}" if status.exit_code is not None
                       else f"init not up after {START_TIMEOUT}s")
                tail = said.decode(errors="replace").strip()[-500:]
                raise self._fail(dom, "start", f"{why}; console: {tail}")
            await asyncio.sleep(0.001)

    async def pause(self, dom: DomainHandle) -> None:
        self._init_pid(dom)
        try:
            await asyncio.to_thread(self._cgroup(dom).freeze)
        except CgroupError as e:
            raise self._fail(dom, "pause", e) from None

    async def unpause(self, dom: DomainHandle) -> None:
        try:
            await asyncio.to_thread(self._cgroup(dom).thaw)
        except CgroupError as e:
            raise self._fail(dom, "unpause", e) from None

    async def shutdown(self, dom: DomainHandle, timeout: float = 10.0) -> None:
        d = self._dir(dom)
        cg = self._cgroup(dom)
        if cg.pids():
            (d.path / "stopped").touch()
            try:
                if cg.frozen():
                    await asyncio.to_thread(cg.thaw)
                await self._terminate(self._init_pid(dom), timeout)
                # If init went in time the kernel has killed the rest of its PID namespace
                # and bubblewrap's outer process follows; if not, this is the hard stop.
                # Either way it returns once the cgroup is empty.
                await asyncio.to_thread(cg.kill_all)
            except CgroupError as e:
                raise self._fail(dom, "shutdown", e) from None
        await self._release_root(dom)

    async def _terminate(self, pid: int, timeout: float) -> None:
        """SIGTERM `pid` and wait up to `timeout` for its exit, as an event on a pidfd."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not gone.done():
                gone.set_result(None)
        loop.add_reader(fd, readable)
        try:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
            await asyncio.wait_for(gone, timeout)
        except (TimeoutError, ProcessLookupError):
            pass
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    async def _release_root(self, dom: DomainHandle) -> None:
        """Unmount the overlay; a disposable domain's writable layer goes with it."""
        d = self._dir(dom)
        if mounted(d.root):
            try:
                unmount(d.root)
            except OSError as e:
                raise self._fail(dom, "unmount root", e) from None
        if self._recorded(dom)[1] == "disposable":
            for layer in (d.upper, d.work):
                shutil.rmtree(layer, ignore_errors=True)

    def _foreign(self, dom: DomainHandle) -> bool:
        """Whether the host holds this domid's netns or cgroup without this backend's record:
        another platform's domain (those names are host-wide), never to be touched."""
        return not self._record(dom.domid).exists() and (
            (NETNS_DIR / netns_name(dom.domid)).exists() or self._cgroup(dom).exists())

    async def destroy(self, dom: DomainHandle) -> None:
        if not self._record(dom.domid).exists():
            return   # nothing of this backend's (destroyed already, or never made here)
        cg = self._cgroup(dom)
        ns = netns_name(dom.domid)
        d = self._dir(dom)
        try:
            await asyncio.to_thread(cg.kill_all)
            await self._release_root(dom)
            if (NETNS_DIR / ns).exists():
                # The kernel tears a netns down asynchronously; its veths, and their peers in
                # sys-sec, are deleted here so they are gone when destroy returns.
                for link in await self._veths(ns):
                    await run(["ip", "-n", ns, "link", "delete", link])
                await run(["ip", "netns", "delete", ns])
            cg.remove()
        except (CommandError, CgroupError) as e:
            raise self._fail(dom, "destroy", e) from None
        for name in ("status", "console.log", "stopped", "root", "work"):
            path = d.path / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if self._recorded(dom)[1] != "app":
            shutil.rmtree(d.upper, ignore_errors=True)
        if d.path.is_dir() and not any(d.path.iterdir()):
            d.path.rmdir()
        self._record(dom.domid).unlink(missing_ok=True)

    @staticmethod
    async def _veths(ns: str) -> list[str]:
        done = await run(["ip", "-n", ns, "-o", "link", "show", "type", "veth"])
        # Lines read `3: vif9001.0@if2: <...` (the peer's index after the @).
        return [line.split(": ")[1].split("@")[0] for line in done.stdout.decode().splitlines()]

    async def state(self, dom: DomainHandle) -> RunState:
        cg = self._cgroup(dom)
        if not self._record(dom.domid).exists() or (
                not (NETNS_DIR / netns_name(dom.domid)).exists() and not cg.exists()):
            return RunState.ABSENT
        status = self._status(dom)
        if status.init_pid is None:
            return RunState.CREATED
        if cg.pids():
            return RunState.PAUSED if cg.frozen() else RunState.RUNNING
        if status.exit_code == 0 or (self._dir(dom).path / "stopped").exists():
            return RunState.SHUTDOWN
        return RunState.CRASHED

    async def console(self, dom: DomainHandle) -> Path:
        return self._dir(dom).console

    async def exec(self, dom: DomainHandle, argv: list[str], timeout: float = 60.0,
                   stdin: bytes | None = None) -> ExecResult:
        """Run `argv` in the domain's namespaces, root and cgroup, like `xl`/`qvm-run`.

        It runs with dom0's capabilities, not the reduced set the domain's own processes
        have: it is dom0 acting inside the domain."""
        cmd, env = self.exec_command(dom, argv)
        try:
            done = await run(cmd, input=stdin, timeout=timeout, check=False, env=env)
        except CommandError as e:
            raise self._fail(dom, "exec", e) from None
        return ExecResult(done.returncode, done.stdout, done.stderr)

    def exec_command(self, dom: DomainHandle, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        """The command line and environment `exec` runs, for a caller that streams the
        output itself (a scan in sys-sec)."""
        pid = self._init_pid(dom)
        return self._cgroup(dom).joined([
            "nsenter", "--target", str(pid), "--net", "--mount", "--pid", "--uts", "--ipc",
            "--root", "--wd", "--", *argv]), domain_env(dom)

    # -- files at rest ------------------------------------------------------------------

    def writable_layer(self, spec: DomainSpec) -> Path:
        """What the domain wrote: its overlay's upper layer (kept across restarts for an
        app domain; it exists once the domain was created)."""
        return self.state_dir / "domains" / spec.name / "upper"

    def live_root(self, spec: DomainSpec) -> Path | None:
        """The domain's merged root while it is mounted: where dom0 changes a running
        domain's files (overlayfs does not see changes made to its upper layer directly)."""
        root = self.state_dir / "domains" / spec.name / "root"
        return root if mounted(root) else None

    def namespace_pid(self, dom: DomainHandle) -> int:
        """A process in the domain's mount namespace (its init), to show it a view."""
        return self._init_pid(dom)

    # -- network ----------------------------------------------------------------------

    async def add_vif(self, frontend: DomainHandle, backend: DomainHandle, devid: int) -> None:
        if backend.domid == 0:
            raise self._fail(frontend, f"vif {devid}",
                             "the ns backend needs a backend domain (sys-sec), not dom0")
        vif, eth = f"vif{frontend.domid}.{devid}", f"eth{devid}"
        back, front = netns_name(backend.domid), netns_name(frontend.domid)
        try:
            # Each end is born in its namespace under its final name: nothing ever appears
            # in dom0's namespace, so no temporary names and no clash with dom0's links.
            await run(["ip", "link", "add", vif, "netns", back, "type", "veth",
                       "peer", "name", eth, "netns", front])
            await run(["ip", "-n", back, "link", "set", vif, "up"])
            await run(["ip", "-n", front, "link", "set", eth, "up"])
        except CommandError as e:
            raise self._fail(frontend, f"vif {devid}", e) from None

    async def remove_vif(self, frontend: DomainHandle, backend: DomainHandle,
                         devid: int) -> None:
        back = netns_name(backend.domid)
        vif = f"vif{frontend.domid}.{devid}"
        if not (NETNS_DIR / back).exists():
            return
        done = await run(["ip", "-n", back, "link", "delete", vif], check=False)
        if done.returncode != 0 and b"Cannot find device" not in done.stderr:
            raise self._fail(frontend, f"remove vif {devid}",
                             done.stderr.decode(errors="replace").strip())

    async def list_domids(self) -> list[int]:
        """The domains this backend (this state dir) made and has not destroyed yet.

        Only its own: another platform on the same host (a second dom0d, a test) has other
        namespaces and cgroups that are none of its business."""
        records = self.state_dir / "domids"
        if not records.is_dir():
            return []
        return sorted(int(p.name) for p in records.iterdir() if p.name.isdigit())
