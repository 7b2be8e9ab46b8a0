"""The whole of dom0 as a person runs it: `hyperwall-dom0d`, its xenstored, the ns backend,
the agents in every domain, and the `hyperwall` CLI (root only).

Each test runs its own platform in a temporary folder with its own domid range, and tears
it down to nothing afterwards, whatever happened (dom0/sim/embedded.py).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import AsyncIterator

import pytest

from dom0.backends._ns_rootfs import parse_status
from dom0.layout import vif_addressing
from dom0.sim.embedded import Platform
from dom0.xenstore.client import Perm, XenStore
from dom0.xenstored.journal import changes
from tests.leftovers import leftovers, mounts_under

pytestmark = [pytest.mark.root, pytest.mark.slow]

FIRST_DOMID = 2000 + (os.getpid() % 300) * 20
CONNECTED = b"4"


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    p = Platform(first_domid=FIRST_DOMID)
    try:
        p.start()
        yield p
    finally:
        log = p.log_text()
        await p.close()
        print(log)


async def listing(p: Platform) -> dict[str, dict]:
    code, out, err = await p.cli("--json", "list")
    assert code == 0, err
    return {d["name"]: d for d in json.loads(out)}


async def in_domain(p: Platform, name: str, *argv: str) -> tuple[int, str]:
    code, out, err = await p.cli("exec", name, "--", *argv)
    return code, out + err


def assert_gone(p: Platform, domids: list[int]) -> None:
    traces = [t for domid in domids for t in leftovers(domid)]
    traces += [f"mount {m}" for m in mounts_under(p.state_dir)]
    with p.xenstore() as xs:
        traces += [f"xenstore /local/domain/{d}" for d in xs.ls("/local/domain") if d != "0"]
        traces += [f"xenstore /vm/{u}" for u in xs.ls("/vm")] if xs.exists("/vm") else []
        traces += [f"xenstore /libxl/{d}" for d in xs.ls("/libxl")] if xs.exists("/libxl") \
            else []
    traces += [f"domain socket {d}" for d in (p.xs_rundir / "domain").glob("*")
               if (p.xs_rundir / "domain").exists()]
    assert not traces, traces


async def test_the_standard_platform_runs_isolated_domains_and_leaves_nothing(
        platform: Platform) -> None:
    code, out, err = await platform.cli("up")
    assert code == 0, err + platform.log_text()
    doms = await listing(platform)
    assert {n: d["state"] for n, d in doms.items()} == dict.fromkeys(
        ("sys-sec", "family", "untrusted", "work"), "running")
    ids = {n: d["domid"] for n, d in doms.items()}
    assert sorted(ids.values()) == list(range(FIRST_DOMID, FIRST_DOMID + 4))
    # sys-sec's services serve once `up` returns, at once (it used to return before them).
    with platform.xenstore() as xs:
        assert xs.read(f"/local/domain/{ids['sys-sec']}/data/hyperwall/ips") == b"running"
    assert (platform.sys_sec_dir / "security.sock").is_socket()
    code, out, err = await platform.cli("alerts")
    assert (code, out.strip()) == (0, "no alerts"), err
    # The person's view, as `xl list` shows it.
    code, table, _ = await platform.cli("list")
    assert table.splitlines()[0].split() == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)",
                                             "Policy"]

    for name in ids:
        code, out = await in_domain(platform, name, "hostname")
        assert (code, out.strip()) == (0, name)
    sec = ids["sys-sec"]
    with platform.xenstore() as xs:
        for name, domid in ids.items():
            base = f"/local/domain/{domid}"
            assert xs.read(f"{base}/name") == name.encode()
            assert xs.read(f"{base}/domid") == str(domid).encode()
            # As libxl: dom0 owns it, the domain may read it (and write where dom0 lets it).
            assert xs.get_perms(base) == [Perm(0, "n"), Perm(domid, "r")]
            vm = xs.read(f"{base}/vm").decode()
            assert xs.read(f"{vm}/name") == name.encode()
            if name != "sys-sec":
                # Both ends of the vif Connected, each directory readable by the other end.
                fe, be = f"{base}/device/vif/0", f"/local/domain/{sec}/backend/vif/{domid}/0"
                assert xs.read(f"{fe}/state") == xs.read(f"{be}/state") == CONNECTED
                assert xs.get_perms(fe) == [Perm(domid, "n"), Perm(sec, "r")]
                assert xs.get_perms(be) == [Perm(sec, "n"), Perm(domid, "r")]
                code, out = await in_domain(platform, name, "ip", "-4", "-o", "addr", "show",
                                            "eth0")
                assert xs.read(f"{be}/ip").decode() + "/32" in out
                code, out = await in_domain(platform, name, "ip", "-o", "link", "show", "eth0")
                assert f"link/ether {xs.read(f'{fe}/mac').decode()} " in out
                code, out = await in_domain(platform, name, "ping", "-c1", "-W2",
                                            "10.137.255.254")
                assert code == 0, out

    # sys-sec's state folder is dom0's to read (EVE logs, its API socket); no guest has it.
    code, out = await in_domain(platform, "sys-sec", "touch", "/var/lib/hyperwall/written")
    assert code == 0, out
    assert (platform.state_dir / "sys-sec" / "written").exists()
    code, out = await in_domain(platform, "family", "ls", "/var/lib/hyperwall/written")
    assert code != 0

    # family reads its own keys through its own socket; work's are not for it; dom0 sees both.
    work = ids["work"]
    code, out = await in_domain(platform, "family", "xenstore-read", "name")
    assert (code, out.strip()) == (0, "family")
    code, out = await in_domain(platform, "family", "xenstore-read", f"/local/domain/{work}/name")
    assert code != 0
    code, out = await in_domain(platform, "family", "xenstore-ls", f"/local/domain/{work}")
    assert code != 0 and "Permission denied" in out
    with platform.xenstore() as xs:
        assert xs.read(f"/local/domain/{work}/name") == b"work"

    code, _, err = await platform.cli("down")
    assert code == 0, err
    assert {d["state"] for d in (await listing(platform)).values()} == {"defined"}
    assert_gone(platform, list(ids.values()))
    assert not list((platform.state_dir / "ns" / "domids").glob("*"))


def init_pid(p: Platform, name: str) -> int:
    pid = parse_status((p.state_dir / "ns" / "domains" / name / "status").read_text()).init_pid
    assert pid is not None
    return pid


async def test_a_killed_dom0d_comes_back_and_adopts_what_runs(platform: Platform) -> None:
    code, _, err = await platform.cli("start", "family")
    assert code == 0, err
    before = await listing(platform)
    pids = {name: init_pid(platform, name) for name in ("sys-sec", "family")}
    platform.kill()
    # The domains do not notice: their xenstore is not dom0d's.
    with platform.xenstore() as xs:
        assert xs.read(f"/local/domain/{before['family']['domid']}/name") == b"family"
    platform.start()
    after = await listing(platform)
    for name in ("sys-sec", "family"):
        assert (after[name]["state"], after[name]["domid"]) == ("running", before[name]["domid"])
        assert init_pid(platform, name) == pids[name]
    code, out = await in_domain(platform, "family", "hostname")
    assert (code, out.strip()) == (0, "family")
    code, _, err = await platform.cli("down")
    assert code == 0, err
    assert_gone(platform, [d["domid"] for d in before.values() if d["domid"]])


def wait_for_node(p: Platform, path: str, found: threading.Event) -> threading.Thread:
    """Set `found` the moment `path` exists (xenstore watch events, not polling)."""
    def watch() -> None:
        with XenStore(("unix", str(p.xs_rundir / "socket"))).connect() as xs:
            monitor = xs.monitor()
            monitor.watch(path.encode(), b"t")
            for _ in monitor.wait():
                if xs.exists(path):
                    found.set()
                    return
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("kill_when", ["creating", "vif"])
async def test_dom0d_killed_during_a_start_leaves_it_finished_or_rolled_back(
        platform: Platform, kill_when: str) -> None:
    code, _, err = await platform.cli("start", "sys-sec")
    assert code == 0, err
    guest = FIRST_DOMID + 1   # the next domid: what dom0d will give family
    path = (f"/libxl/{guest}/hyperwall/creating" if kill_when == "creating"
            else f"/local/domain/{guest}/device/vif/0")
    found = threading.Event()
    wait_for_node(platform, path, found)
    start = asyncio.ensure_future(platform.cli("start", "family"))
    assert await asyncio.to_thread(found.wait, 30), f"{path} never appeared"
    platform.kill()
    await start   # its connection broke; what matters is what the next dom0d makes of it
    platform.start()
    family = (await listing(platform))["family"]
    if family["state"] == "defined":     # rolled back: nothing of it is left
        assert not leftovers(guest)
        with platform.xenstore() as xs:
            assert not xs.exists(f"/local/domain/{guest}") and not xs.exists(f"/libxl/{guest}")
    code, _, err = await platform.cli("start", "family")
    assert code == 0 or "already" in err, err
    assert (await listing(platform))["family"]["state"] == "running"
    code, _, err = await platform.cli("down")
    assert code == 0, err
    assert_gone(platform, [FIRST_DOMID, guest, guest + 1])


FLOOD = """
from dom0.xenstore.client import XenStore, XsError
xs = XenStore().connect()
xs.write("device/vif/0/state", b"\\xff garbage")
xs.write("data/hyperwall/agent", b"\\x00\\xfe" * 1000)
refused = None
for i in range(5000):
    try:
        xs.write(f"data/flood/{i}", "x" * 100)
    except XsError as e:
        refused = e.name
        break
print(refused)
"""


async def test_a_guest_writing_garbage_and_flooding_xenstore_disturbs_nobody(
        platform: Platform) -> None:
    for name in ("family", "untrusted"):
        code, _, err = await platform.cli("start", name)
        assert code == 0, err
    code, out = await in_domain(platform, "family", sys.executable, "-c", FLOOD)
    assert code == 0, out
    assert out.split()[-1] in ("EQUOTA", "ENOSPC"), out   # its quota stopped it
    # dom0, the other guest and sys-sec's agent carry on: a new guest still connects.
    doms = await listing(platform)
    assert doms["untrusted"]["state"] == "running"
    code, out = await in_domain(platform, "untrusted", "xenstore-read", "name")
    assert (code, out.strip()) == (0, "untrusted")
    code, _, err = await platform.cli("start", "work")
    assert code == 0, err
    with platform.xenstore() as xs:
        assert xs.read(f"/local/domain/{doms['untrusted']['domid']}/device/vif/0/state") \
            == CONNECTED
    code, _, err = await platform.cli("down")
    assert code == 0, err
    assert_gone(platform, list(range(FIRST_DOMID, FIRST_DOMID + 4)))


PAIR = {"sys-sec.toml": 'name = "sys-sec"\nkind = "sys-sec"\nbackend = "ns"\n'
        'policy = "uplink"\n',
        "g.toml": 'name = "g"\nkind = "disposable"\nbackend = "ns"\npolicy = "internet"\n'}


async def reaches_its_gateway(p: Platform, name: str, domid: int) -> bool:
    code, _ = await in_domain(p, name, "ping", "-c1", "-W2", vif_addressing(domid, 0).gateway)
    return code == 0


async def test_two_platforms_given_the_same_domids_run_side_by_side() -> None:
    # Two dom0s on one host (two test runs, a demo beside a test): a domain's netns and
    # cgroup are named by its domid host-wide, so the second must take other domids and
    # leave the first's alone (it used to destroy them, rolling back its "exists" failure).
    first_domid = FIRST_DOMID + 10
    one, two = Platform(PAIR, first_domid=first_domid), Platform(PAIR, first_domid=first_domid)
    try:
        one.start()
        code, _, err = await one.cli("up")
        assert code == 0, err + one.log_text()
        ones = {n: d["domid"] for n, d in (await listing(one)).items()}
        assert sorted(ones.values()) == [first_domid, first_domid + 1]
        two.start()
        code, _, err = await two.cli("up")
        assert code == 0, err + two.log_text()
        twos = {n: d["domid"] for n, d in (await listing(two)).items()}
        assert not set(twos.values()) & set(ones.values()), (ones, twos)
        assert "in use" in two.log_text() or "not this backend's" in two.log_text()
        for p, ids in ((one, ones), (two, twos)):
            assert {d["state"] for d in (await listing(p)).values()} == {"running"}
            assert await reaches_its_gateway(p, "g", ids["g"]), (ids, p.log_text())
        await two.close()
        # The first one's domains are untouched by the second's whole life.
        assert await reaches_its_gateway(one, "g", ones["g"])
        assert not [t for d in twos.values() for t in leftovers(d)]
        code, _, err = await one.cli("down")
        assert code == 0, err
        assert_gone(one, list(ones.values()))
    finally:
        await two.close()
        await one.close()


def journal(p: Platform) -> bytes:
    return (p.state_dir / "xenstore" / "journal").read_bytes()


def vif_changes(since: bytes, now: bytes, fe: str, be: str) -> list[tuple[str, str]]:
    """The vif's state and `online` changes and its directories' removals, in the order the
    daemon made them, each as (which end, what); a removal of a parent counts."""
    assert now.startswith(since)
    seen = []
    for path, value in changes(now[len(since):]):
        for end, base in (("fe", fe), ("be", be)):
            if value is None and (base == path or base.startswith(path + "/")):
                seen.append((end, "removed"))
            elif path.startswith(base + "/"):
                key = path[len(base) + 1:]
                if key in ("state", "online") or seen.count((end, "removed")):
                    seen.append((end, f"{key}={value.decode()}"))
    return seen


async def test_a_vif_is_torn_down_through_closing_and_closed_then_removed(
        platform: Platform) -> None:
    """Xen's order: the backend asked to go (`online` 0) goes Closing, the frontend follows,
    then Closed on both sides, then the directories go (and nothing writes into them
    again); a guest that shuts down itself starts the same walk from its side."""
    for name in ("family", "untrusted"):
        code, _, err = await platform.cli("start", name)
        assert code == 0, err
    ids = {n: d["domid"] for n, d in (await listing(platform)).items()}
    sec = ids["sys-sec"]

    def ends(name: str) -> tuple[str, str]:
        return (f"/local/domain/{ids[name]}/device/vif/0",
                f"/local/domain/{sec}/backend/vif/{ids[name]}/0")

    before = journal(platform)
    code, _, err = await platform.cli("destroy", "family")
    assert code == 0, err
    assert vif_changes(before, journal(platform), *ends("family"))[:7] == [
        ("be", "online=0"), ("be", "state=5"), ("fe", "state=5"), ("be", "state=6"),
        ("fe", "state=6"), ("fe", "removed"), ("be", "removed")]

    before = journal(platform)
    code, _, err = await platform.cli("shutdown", "untrusted")
    assert code == 0, err
    assert vif_changes(before, journal(platform), *ends("untrusted"))[:7] == [
        ("fe", "state=5"), ("be", "state=5"), ("fe", "state=6"), ("be", "state=6"),
        ("be", "online=0"), ("fe", "removed"), ("be", "removed")]

    code, _, err = await platform.cli("down")
    assert code == 0, err
    with platform.xenstore() as xs:
        assert not xs.exists(f"/local/domain/{sec}/backend")
    # Whatever came after a removal would be a stray piece of a device brought back.
    for name in ("family", "untrusted"):
        seen = vif_changes(b"", journal(platform), *ends(name))
        for end in ("fe", "be"):
            after = seen[seen.index((end, "removed")) + 1:]
            assert not [c for c in after if c[0] == end and c[1] != "removed"], seen
