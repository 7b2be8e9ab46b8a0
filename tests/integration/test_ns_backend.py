"""The ns backend with real namespaces, cgroups and mounts (root only).

Each test gets its own state dir and domids from 9000 up, and destroys every domain it
made in a finalizer, whatever happened.
"""
from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from dom0.backends._ns_cgroup import DomainCgroup
from dom0.backends._ns_rootfs import DomainDir, mount_overlay, unmount
from dom0.backends.base import BackendError, DomainHandle, DomidInUse, RunState
from dom0.backends.ns import NsBackend, netns_name
from dom0.config import DomainSpec
from dom0.xenstore.client import XenStore
from domains.runner import run
from tests.conftest import Daemon
from tests.leftovers import processes_in

pytestmark = pytest.mark.root

AGENT = ["sleep", "infinity"]
BASE = 9000 + (os.getpid() % 90) * 10
Make = Callable[..., Awaitable[DomainHandle]]


@pytest.fixture
def backend(tmp_path: Path) -> NsBackend:
    return NsBackend(tmp_path / "state", agent_argv=AGENT)


@pytest.fixture
async def make(backend: NsBackend, tmp_path: Path) -> AsyncIterator[Make]:
    made: list[DomainHandle] = []

    async def make(n: int, name: str, kind: str = "app", start: bool = True,
                   memory_mb: int = 96) -> DomainHandle:
        domid = BASE + n
        dom = DomainHandle(domid, DomainSpec(name=name, kind=kind, memory_mb=memory_mb,
                                             cpu_weight=50), tmp_path / "xs" / str(domid))
        made.append(dom)
        await backend.create(dom)
        if start:
            await backend.start(dom)
        return dom

    yield make
    failures = []
    for dom in made:
        try:
            await backend.destroy(dom)
        except BackendError as e:  # keep cleaning the others, then say what stayed
            failures.append(e)
    assert not failures, failures


async def sh(backend: NsBackend, dom: DomainHandle, script: str) -> str:
    done = await backend.exec(dom, ["sh", "-c", script], timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    # The kernel gives no event for these (a /proc entry, a state file): poll, bounded.
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_create_makes_resources_but_runs_nothing(backend: NsBackend, make: Make) -> None:
    dom = await make(0, "fresh", start=False)
    assert await backend.state(dom) is RunState.CREATED
    assert (Path("/run/netns") / netns_name(dom.domid)).exists()
    assert DomainCgroup(dom.domid).exists() and not processes_in(dom.domid)
    assert dom.domid in await backend.list_domids()
    with pytest.raises(BackendError, match="already exists"):
        await backend.create(dom)


async def test_init_is_pid1_hostname_is_the_name_and_the_agent_runs(
        backend: NsBackend, make: Make) -> None:
    dom = await make(0, "work")
    assert await backend.state(dom) is RunState.RUNNING
    assert (await sh(backend, dom, "hostname")).strip() == "work"
    # The agent's Python, its venv and this repository are all there, read-only.
    agent_can = await backend.exec(dom, [sys.executable, "-c", "import domains.agent"])
    assert agent_can.returncode == 0, agent_can.stderr
    cmdline = await sh(backend, dom, "tr '\\0' ' ' </proc/1/cmdline")
    assert "domains/init.py sleep infinity" in cmdline
    env = await sh(backend, dom, "tr '\\0' '\\n' </proc/2/environ")
    assert f"HYPERWALL_DOMID={dom.domid}" in env and "HYPERWALL_NAME=work" in env
    assert "init: started agent pid 2: sleep infinity" in (await backend.console(dom)).read_text()
    # Detached: its own session, so killing dom0d's process group leaves it running.
    assert os.getsid(backend._init_pid(dom)) != os.getsid(0)


def test_the_root_overlay_mounts_by_syscall_and_says_what_failed(tmp_path: Path) -> None:
    lower, d = tmp_path / "lower", DomainDir(tmp_path / "dom")
    lower.mkdir()
    (lower / "from-template").write_text("t")
    d.make()
    mount_overlay(lower, d)
    try:
        assert (d.root / "from-template").read_text() == "t"
        (d.root / "written").write_text("w")
        assert (d.upper / "written").read_text() == "w"   # the writable layer took it
    finally:
        unmount(d.root)
    assert not (d.root / "from-template").exists()
    with pytest.raises(OSError, match=f"mount overlay .*lowerdir={tmp_path}/absent.* on {d.root}"):
        mount_overlay(tmp_path / "absent", d)
    with pytest.raises(OSError, match=f"umount {d.root}"):
        unmount(d.root)


async def test_the_default_agent_command_is_the_venv_python_agent(tmp_path: Path) -> None:
    assert NsBackend(tmp_path).agent_argv == [sys.executable, "-S", "-m", "domains.agent_start"]


async def test_exec_returns_output_exit_code_and_takes_stdin(backend: NsBackend,
                                                             make: Make) -> None:
    dom = await make(0, "exec")
    done = await backend.exec(dom, ["sh", "-c", "cat; echo err >&2; exit 7"], stdin=b"in")
    assert (done.returncode, done.stdout, done.stderr) == (7, b"in", b"err\n")
    with pytest.raises(BackendError, match="timed out"):
        await backend.exec(dom, ["sleep", "30"], timeout=0.3)


async def test_limits_are_in_the_cgroup(backend: NsBackend, make: Make) -> None:
    dom = await make(0, "limits", memory_mb=96)
    cg = Path("/sys/fs/cgroup")
    if (cg / "cgroup.controllers").exists():
        leaf = cg / "hyperwall" / f"dom-{dom.domid}"
        assert (leaf / "memory.max").read_text().strip() == str(96 << 20)
        assert (leaf / "cpu.weight").read_text().strip() == "50"
    else:
        leaf_of = lambda c: cg / c / "hyperwall" / f"dom-{dom.domid}"  # noqa: E731
        assert (leaf_of("memory") / "memory.limit_in_bytes").read_text().strip() == \
            str(96 << 20)
        assert (leaf_of("cpu") / "cpu.shares").read_text().strip() == "512"
        assert (leaf_of("pids") / "pids.max").read_text().strip() == "1024"
    pids = processes_in(dom.domid)
    assert backend._init_pid(dom) in pids and len(pids) >= 3  # bwrap, init, agent


async def test_two_domains_see_neither_each_other_nor_the_host(backend: NsBackend, make: Make,
                                                             tmp_path: Path) -> None:
    a = await make(0, "alpha")
    b = await make(1, "beta")
    await sh(backend, a, "echo secret > /root/alpha-file")
    assert "alpha-file" not in await sh(backend, b, "ls -a /root")
    procs_b = await sh(backend, b, "ls /proc")
    pids_b = {int(p) for p in procs_b.split() if p.isdigit()}
    # beta sees only its own few processes, numbered from 1; none of alpha's host pids.
    assert 1 in pids_b and not pids_b & set(processes_in(a.domid))
    listing = await sh(backend, b, "ls /; ls /home /work 2>&1; cat /etc/hostname")
    assert "localhost" in listing and "shared" not in listing
    assert "No such file" in await sh(backend, b, f"ls {tmp_path} 2>&1 || true")
    assert "No such file" in await sh(backend, b, "ls /work/shared 2>&1 || true")
    assert "No such file" in await sh(backend, b, "ls /root/.ssh 2>&1 || true")
    usr = await backend.exec(b, ["touch", "/usr/hyperwall-probe"])
    assert usr.returncode != 0 and b"Read-only" in usr.stderr


async def test_pause_freezes_and_unpause_thaws(backend: NsBackend, make: Make) -> None:
    dom = await make(0, "frozen")
    cg = DomainCgroup(dom.domid)
    await backend.pause(dom)
    assert await backend.state(dom) is RunState.PAUSED and cg.frozen()
    for pid in cg.pids():
        status = (Path("/proc") / str(pid) / "status").read_text()
        assert "State:\tD" in status or "State:\tT" in status, status
    await backend.unpause(dom)
    assert await backend.state(dom) is RunState.RUNNING and not cg.frozen()
    assert (await sh(backend, dom, "echo alive")).strip() == "alive"


async def test_init_reaps_orphans(backend: NsBackend, make: Make) -> None:
    dom = await make(0, "reaper")
    orphan = (await sh(backend, dom, "sleep 0.1 >/dev/null & echo $!")).strip()

    async def gone() -> bool:
        done = await backend.exec(dom, ["test", "-e", f"/proc/{orphan}"])
        return done.returncode != 0

    deadline = time.monotonic() + 5
    while not await gone():  # a zombie keeps its /proc entry until PID 1 reaps it
        assert time.monotonic() < deadline, "orphan not reaped by init"
        await asyncio.sleep(0.05)


async def test_shutdown_is_polite_then_forced(backend: NsBackend, make: Make,
                                              tmp_path: Path) -> None:
    dom = await make(0, "polite", kind="disposable")
    await sh(backend, dom, "echo scratch > /root/note")
    await backend.shutdown(dom, timeout=5)
    assert await backend.state(dom) is RunState.SHUTDOWN
    # A disposable domain's writes are thrown away when it stops, not only at destroy.
    assert not (backend.state_dir / "domains" / "polite" / "upper").exists()
    assert "init: stopped" in (await backend.console(dom)).read_text()
    assert not processes_in(dom.domid)
    stubborn = NsBackend(tmp_path / "state",
                         agent_argv=["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    dom2 = await make(1, "stubborn", start=False)
    await stubborn.start(dom2)
    started = time.monotonic()
    await stubborn.shutdown(dom2, timeout=0.3)
    assert time.monotonic() - started < 3
    assert await backend.state(dom2) is RunState.SHUTDOWN and not processes_in(dom2.domid)


async def test_an_agent_exiting_zero_shuts_the_domain_down(tmp_path: Path, make: Make) -> None:
    backend = NsBackend(tmp_path / "state", agent_argv=["true"])
    dom = await make(0, "poweroff", start=False)
    await backend.start(dom)
    await wait_for(lambda: not DomainCgroup(dom.domid).pids(), "the domain to end")
    assert await backend.state(dom) is RunState.SHUTDOWN


DOM0 = """
import asyncio, sys
from pathlib import Path
from dom0.backends.base import DomainHandle
from dom0.backends.ns import NsBackend
from dom0.config import DomainSpec
state, domid = Path(sys.argv[1]), int(sys.argv[2])
dom = DomainHandle(domid, DomainSpec(name="survivor", kind="app"), Path(sys.argv[3]))
async def up():
    backend = NsBackend(state, agent_argv=["sleep", "infinity"])
    await backend.create(dom)
    await backend.start(dom)
asyncio.run(up())
print("up", flush=True)
sys.stdin.read()
"""


async def test_a_domain_outlives_a_killed_dom0_and_is_found_again(
        backend: NsBackend, make: Make, tmp_path: Path) -> None:
    dom = await make(0, "survivor", start=False)
    await backend.destroy(dom)
    # A stand-in dom0d in its own process group, killed the hard way once the domain runs.
    dom0 = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DOM0, str(backend.state_dir), str(dom.domid),
        str(dom.xenstore_dir), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        start_new_session=True)
    assert dom0.stdout is not None
    assert await asyncio.wait_for(dom0.stdout.readline(), 20) == b"up\n"
    os.killpg(dom0.pid, 9)
    await dom0.wait()
    again = NsBackend(tmp_path / "state", agent_argv=AGENT)
    assert dom.domid in await again.list_domids()
    assert await again.state(dom) is RunState.RUNNING
    assert (await again.exec(dom, ["hostname"])).stdout == b"survivor\n"


async def test_xenstore_dir_is_bound_and_a_later_socket_is_reachable(backend: NsBackend,
                                                                     make: Make) -> None:
    dom = await make(0, "xs")
    (dom.xenstore_dir / "marker").write_text("hello")
    assert (await sh(backend, dom, "cat /var/run/xenstored/marker")) == "hello"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(dom.xenstore_dir / "socket"))
        server.listen(1)
        server.settimeout(10)
        client = asyncio.ensure_future(backend.exec(dom, [
            sys.executable, "-c", "import socket; s = socket.socket(socket.AF_UNIX); "
            "s.connect('/var/run/xenstored/socket'); s.sendall(b'from inside')"]))
        conn, _ = await asyncio.to_thread(server.accept)
        with conn:
            assert await asyncio.to_thread(conn.recv, 100) == b"from inside"
        assert (await client).returncode == 0
    finally:
        server.close()


async def links(ns: str | None) -> str:
    argv = ["ip", "-o", "link"] if ns is None else ["ip", "-n", ns, "-o", "link"]
    return (await run(argv)).stdout.decode()


async def test_vif_ends_have_their_names_in_their_namespaces(backend: NsBackend,
                                                             make: Make) -> None:
    sec = await make(0, "sec", kind="sys-sec")
    guest = await make(1, "guest")
    await backend.add_vif(guest, sec, 0)
    vif = f"vif{guest.domid}.0"
    assert f" {vif}@" in await links(netns_name(sec.domid))
    assert " eth0@" in await links(netns_name(guest.domid))
    assert vif not in await links(None)
    deadline = time.monotonic() + 5
    # Carrier comes up asynchronously once both ends are up (the kernel's link watch).
    while "state UP" not in await sh(backend, guest, "ip -o link show eth0"):
        assert time.monotonic() < deadline, "eth0 never came up"
        await asyncio.sleep(0.01)
    await backend.remove_vif(guest, sec, 0)
    assert vif not in await links(netns_name(sec.domid))
    assert " eth0@" not in await links(netns_name(guest.domid))
    await backend.remove_vif(guest, sec, 0)  # gone already: nothing to do
    with pytest.raises(BackendError, match="not dom0"):
        await backend.add_vif(guest, DomainHandle(0, sec.spec, sec.xenstore_dir), 1)


async def test_disposable_writes_vanish_app_writes_persist(backend: NsBackend, make: Make,
                                                         tmp_path: Path) -> None:
    app = await make(0, "keeper", kind="app")
    tmp = await make(1, "throwaway", kind="disposable")
    for dom in (app, tmp):
        await sh(backend, dom, "echo kept > /root/note")
        await backend.destroy(dom)
        await backend.create(dom)
        await backend.start(dom)
    assert (await sh(backend, app, "cat /root/note")).strip() == "kept"
    assert "No such file" in await sh(backend, tmp, "cat /root/note 2>&1 || true")


async def test_destroy_leaves_nothing_behind(backend: NsBackend, make: Make,
                                             tmp_path: Path) -> None:
    sec = await make(0, "gone-sec", kind="sys-sec")
    guest = await make(1, "gone-guest", kind="disposable")
    kept = await make(2, "gone-app", kind="app")
    await backend.add_vif(guest, sec, 0)
    await backend.add_vif(kept, sec, 0)
    await backend.pause(kept)  # destroy must also work on a frozen domain
    for dom in (guest, kept):
        await backend.destroy(dom)
        await backend.destroy(dom)  # idempotent
        assert await backend.state(dom) is RunState.ABSENT
        ns = netns_name(dom.domid)
        assert ns not in (await run(["ip", "netns", "list"])).stdout.decode()
        assert f"vif{dom.domid}." not in await links(netns_name(sec.domid))
        assert f"vif{dom.domid}." not in await links(None)
        domain_dir = backend.state_dir / "domains" / dom.spec.name
        assert str(domain_dir) not in Path("/proc/self/mountinfo").read_text()
        assert not any(d.exists() for d in DomainCgroup(dom.domid).dirs())
        assert not processes_in(dom.domid)
        assert dom.domid not in await backend.list_domids()
    assert not (backend.state_dir / "domains" / "gone-guest").exists()
    assert [p.name for p in (backend.state_dir / "domains" / "gone-app").iterdir()] == ["upper"]
    assert sec.domid in await backend.list_domids()


async def test_a_domid_another_backend_holds_is_in_use_and_left_alone(
        backend: NsBackend, make: Make, tmp_path: Path) -> None:
    theirs = await make(3, "theirs")
    other = NsBackend(tmp_path / "other-state", agent_argv=AGENT)
    mine = DomainHandle(theirs.domid, DomainSpec(name="mine", kind="app"), tmp_path / "xs-other")
    assert await other.state(mine) is RunState.ABSENT   # nothing of the other backend's
    with pytest.raises(DomidInUse, match=netns_name(theirs.domid)):
        await other.create(mine)
    await other.destroy(mine)   # what a rollback does: it must not take theirs
    assert await other.list_domids() == []
    assert await backend.state(theirs) is RunState.RUNNING
    assert (await sh(backend, theirs, "hostname")).strip() == "theirs"


async def test_a_killed_agent_is_restarted_and_a_killed_init_is_a_crash(
        backend: NsBackend, make: Make) -> None:
    dom = await make(0, "crashy")
    console = await backend.console(dom)
    await sh(backend, dom, "kill -9 2")
    await wait_for(lambda: "agent killed by SIGKILL" in console.read_text(), "init to notice")
    assert "restarting agent in 0.5s" in console.read_text()
    os.kill(backend._init_pid(dom), 9)
    await wait_for(lambda: not DomainCgroup(dom.domid).pids(), "the domain's processes to go")
    assert await backend.state(dom) is RunState.CRASHED and not processes_in(dom.domid)


async def test_the_domain_talks_to_its_own_xenstore_socket_across_a_daemon_restart(
        backend: NsBackend, make: Make, hw_xenstored: Daemon) -> None:
    domid = BASE + 0
    with XenStore(("unix", str(hw_xenstored.socket))).connect() as xs:
        xs.introduce(domid)
        xs.write("/probe", "for the domain")
        xs.set_perms("/probe", ["n0", f"r{domid}"])
    dom = await make(0, "xsclient", start=False)
    dom = DomainHandle(domid, dom.spec, hw_xenstored.rundir / "domain" / str(domid))
    await backend.start(dom)
    # It acts as its domain: it may read what it was granted, not list dom0's root.
    probe = [sys.executable, "-c", "from dom0.xenstore.client import XenStore, XsError\n"
             "xs = XenStore().connect(); print(xs.read('/probe').decode())\n"
             "try: xs.ls('/')\nexcept XsError as e: print(e)"]
    for _ in range(2):
        done = await backend.exec(dom, probe)
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().splitlines() == ["for the domain", "EACCES on /"]
        # The daemon recreates the socket file on restart; the bound directory shows it.
        hw_xenstored.restart()
