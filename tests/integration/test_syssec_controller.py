"""sys-sec's controller on its own, against the real Hyperwall xenstored: dom0's part is
played by the test (it introduces a sys-sec domain and writes the vif backend directories as
the toolstack does), the controller runs in a `-sec` namespace connected through that
domain's own xenstore socket, with veths to two guests and to an `inet` namespace.

No engine runs here (--no-engine: the firewall forwards without inspection), so these
tests say nothing of the IPS; they pin down policy, DNS filtering and what gets reported.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from dom0.layout import Node, vif_addressing, vif_nodes
from dom0.xenstore.client import AsyncXenStore
from domains.syssec.controller import Controller, Launch, Settings
from domains.syssec.ipsd import read_stats
from netsec.rules import load_rules
from proto.gen.hyperwall.netsec.v1 import security_pb2
from proto.gen.hyperwall.netsec.v1 import security_pb2_grpc as security_grpc
from tests.conftest import REPO, Daemon
from tests.netlab import Lab, lab

pytestmark = pytest.mark.root

SEC, FAMILY, OTHER = 7, 11, 12
GW = "10.137.255.254"
INET, UPSTREAM, PUBLIC_RESOLVER, SITE = "198.51.100.1", "198.51.100.1", "198.51.100.53", \
    "198.51.100.80"
ZONE = {"allowed.example": SITE, "blocked.example": "198.51.100.66"}
APPLIED = f"/local/domain/{SEC}/data/hyperwall/policy-applied"
ERRORS = f"/local/domain/{SEC}/data/hyperwall/policy-errors"
LISTS = f"/local/domain/{SEC}/data/hyperwall/lists"


def ip(domid: int) -> str:
    return vif_addressing(domid, 0).ip


def policy_key(domid: int) -> str:
    return f"/local/domain/{SEC}/backend/vif/{domid}/0/hyperwall/policy"


@dataclass
class World:
    net: Lab
    ns: dict[str, str]
    xs: AsyncXenStore
    state: Path
    lists: Path
    rules_dir: Path
    controller: subprocess.Popen[bytes]
    controller_log: Path
    argv: list[str]
    procs: list[subprocess.Popen[bytes]]

    def probe(self, guest: str, *argv: str) -> str:
        out = self.net.run(self.ns[guest], sys.executable, str(REPO / "tests" / "net_probe.py"),
                           *argv, check=False)
        return out.stdout.decode().strip() or out.stderr.decode()

    async def applied(self, line: str, timeout: float = 1.0) -> float:
        """Seconds until sys-sec says `line` is in force (fails after `timeout`)."""
        started = time.monotonic()
        got = await self.xs.wait_value(APPLIED, lambda v: v is not None and
                                       line in v.decode(errors="replace"), timeout)
        assert got is not None and line in got.decode(errors="replace"), \
            f"not applied within {timeout}s: {line!r}; sys-sec says {got!r}\n" + self.log()
        return time.monotonic() - started

    async def reload_lists(self, pred: Callable[[str], bool]) -> str:
        """SIGHUP the controller; what it says of its lists once `pred` holds (or fail)."""
        self.controller.send_signal(signal.SIGHUP)
        got = await self.xs.wait_value(LISTS, lambda v: v is not None and pred(v.decode()), 2.0)
        assert got is not None and pred(got.decode()), f"lists: {got!r}\n" + self.log()
        return got.decode()

    async def restart(self, pred: Callable[[str], bool]) -> str:
        """sys-sec's controller stopped and started again; what it says of its lists once
        `pred` holds (or fail)."""
        stop(self.controller)
        await self.xs.write(LISTS, "")
        self.controller = start(self.argv, self.controller_log)
        self.procs.append(self.controller)
        got = await self.xs.wait_value(LISTS, lambda v: v is not None and pred(v.decode()),
                                       15.0)
        assert got is not None and pred(got.decode()), f"lists: {got!r}\n" + self.log()
        return got.decode()

    def log(self) -> str:
        return self.controller_log.read_text(errors="replace")


def build(net: Lab) -> dict[str, str]:
    ns = {name: net.ns(name) for name in ("sec", "family", "other", "inet")}
    net.run(ns["sec"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for guest, domid in (("family", FAMILY), ("other", OTHER)):
        vif = f"vif{domid}.0"
        net.link(ns[guest], "eth0", ns["sec"], vif)
        # What the agents do once the vif handshake is through (domains/agent.py).
        net.run(ns[guest], "ip", "addr", "add", f"{ip(domid)}/32", "dev", "eth0")
        net.run(ns[guest], "ip", "route", "add", GW, "dev", "eth0", "scope", "link")
        net.run(ns[guest], "ip", "route", "add", "default", "via", GW)
        net.run(ns["sec"], "ip", "addr", "add", f"{GW}/32", "dev", vif)
        net.run(ns["sec"], "ip", "route", "add", f"{ip(domid)}/32", "dev", vif)
    net.link(ns["sec"], "uplink0", ns["inet"], "eth0")
    net.run(ns["sec"], "ip", "addr", "add", "198.51.100.2/24", "dev", "uplink0")
    net.run(ns["sec"], "ip", "route", "add", "default", "via", INET)
    for addr in (INET, PUBLIC_RESOLVER, SITE):
        net.run(ns["inet"], "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
    return ns


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=f, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def world(hw_xenstored: Daemon, tmp_path: Path) -> AsyncIterator[World]:
    xs = await AsyncXenStore.connect(("unix", str(hw_xenstored.socket)))
    # dom0's part: sys-sec exists and owns its tree; two guests' vifs have it as backend.
    await xs.introduce(SEC)
    await xs.write_nodes([Node(f"/local/domain/{SEC}", None, (f"n{SEC}",)),
                          *vif_nodes(FAMILY, SEC, 0, "filtered", name="family"),
                          *vif_nodes(OTHER, SEC, 0, "internet", name="other")])
    state, lists, rules_dir = tmp_path / "sec", tmp_path / "lists", tmp_path / "rules"
    for d in (state, lists, rules_dir):
        d.mkdir()
    (state / "syssec.toml").write_text(f'dns_upstream = "{UPSTREAM}"\n')
    (lists / "adult.txt").write_text("# the parent's list\nblocked.example\n")
    (tmp_path / "zone.json").write_text(json.dumps(ZONE))
    procs: list[subprocess.Popen[bytes]] = []
    with lab("hwpol") as net:
        try:
            ns = build(net)
            stub = start(["ip", "netns", "exec", ns["inet"], sys.executable,
                          str(REPO / "tests" / "inet_stub.py"), str(tmp_path / "zone.json"),
                          "80", "853"], tmp_path / "inet.log")
            procs.append(stub)
            assert stub.stdout is not None and stub.stdout.readline().strip() == b"ready"
            socket = hw_xenstored.rundir / "domain" / str(SEC) / "socket"
            argv = ["ip", "netns", "exec", ns["sec"], sys.executable,
                    "-m", "domains.syssec.controller",
                    "--state-dir", str(state), "--uplink", "uplink0", "--lists", str(lists),
                    "--rules-dir", str(rules_dir), "--no-engine", "--xenstore", str(socket)]
            controller = start(argv, tmp_path / "syssec.log")
            procs.append(controller)
            w = World(net, ns, xs, state, lists, rules_dir, controller, tmp_path / "syssec.log",
                      argv, procs)
            await w.applied(f"{FAMILY}/0 family {ip(FAMILY)} filtered", timeout=15)
            await w.applied(f"{OTHER}/0 other {ip(OTHER)} internet")
            # Said once its SIGHUP handler is set.
            assert await xs.wait_value(LISTS, lambda v: v == b"adult=1", 5.0) == b"adult=1"
            yield w
        finally:
            for p in reversed(procs):
                stop(p)
            await xs.close()


async def test_a_policy_change_cuts_the_guest_off_at_once_and_back(world: World) -> None:
    assert world.probe("other", "tcp", SITE, "80") == "OPEN"
    await world.xs.write(policy_key(OTHER), "offline")
    assert await world.applied(f"other {ip(OTHER)} offline") < 1.0
    assert world.probe("other", "tcp", SITE, "80") == "TIMEOUT"
    await world.xs.write(policy_key(OTHER), "internet")
    assert await world.applied(f"other {ip(OTHER)} internet") < 1.0
    assert world.probe("other", "tcp", SITE, "80") == "OPEN"


async def test_a_garbage_policy_shuts_that_vif_and_is_reported_others_unaffected(
        world: World) -> None:
    await world.xs.write(policy_key(OTHER), b"\xffnope")
    await world.applied(f"other {ip(OTHER)} offline")
    errors = (await world.xs.read(ERRORS) or b"").decode()
    assert f"backend/vif/{OTHER}/0/hyperwall/policy" in errors and "offline" in errors
    assert world.probe("other", "tcp", SITE, "80") == "TIMEOUT"
    assert world.probe("family", "tcp", SITE, "80") == "OPEN"
    # An address outside the guest range: that vif is not routed, the other keeps its policy.
    await world.xs.write(policy_key(OTHER), "internet")
    await world.xs.write(f"/local/domain/{SEC}/backend/vif/{OTHER}/0/ip", "192.168.1.9")
    await world.xs.wait_value(ERRORS, lambda v: v is not None and b"192.168.1.9" in v, 1.0)
    assert f"family {ip(FAMILY)} filtered" in (await world.xs.read(APPLIED) or b"").decode()
    assert "other" not in (await world.xs.read(APPLIED) or b"").decode()
    assert world.probe("family", "tcp", SITE, "80") == "OPEN"


async def test_a_filtered_guest_gets_the_sinkhole_and_no_other_resolver(world: World) -> None:
    assert world.probe("family", "dns", GW, "blocked.example") == "0.0.0.0"
    assert world.probe("family", "dns", GW, "allowed.example") == SITE
    # Another resolver is redirected to sys-sec's (that one would answer 198.51.100.66)...
    assert world.probe("family", "dns", PUBLIC_RESOLVER, "blocked.example") == "0.0.0.0"
    assert world.probe("other", "dns", PUBLIC_RESOLVER, "blocked.example") == "198.51.100.66"
    # ... and DNS-over-TLS is refused, for the filtered guest only.
    assert world.probe("family", "tcp", PUBLIC_RESOLVER, "853") == "REFUSED"
    assert world.probe("other", "tcp", PUBLIC_RESOLVER, "853") == "OPEN"
    blocks = [json.loads(line) for line in (world.state / "log" / "dns.json").read_text()
              .splitlines()]
    assert [b["hyperwall"] for b in blocks] == 2 * [
        {"guest": "family", "guest_ip": ip(FAMILY), "category": "adult",
         "site": "blocked.example", "by": "dns"}]
    assert all(b["event_type"] == "alert" for b in blocks)
    # What the parent sees of it, from the same log.
    report = subprocess.run([sys.executable, "-m", "dom0.cli", "--json", "report", "--domain",
                             "family", "--eve", str(world.state / "log" / "dns.json")],
                            capture_output=True, text=True, timeout=30)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["blocked"] == [
        {"category": "adult", "requests": 2,
         "sites": [{"site": "blocked.example", "requests": 2}]}]


async def test_the_engine_gets_the_domains_map_and_the_category_rules(world: World) -> None:
    assert json.loads((world.state / "run" / "domains.json").read_text()) == {
        ip(FAMILY): "family", ip(OTHER): "other"}
    rules = world.rules_dir / "hyperwall-policy.rules"
    loaded = load_rules([rules])
    assert len(loaded.rules) == 4 and not loaded.skipped   # SNI, Host, and the two DNS rules
    assert all(ip(FAMILY) in line and ip(OTHER) not in line
               for line in rules.read_text().splitlines())
    # The guest stops being filtered: its category rules go, its name stays.
    await world.xs.write(policy_key(FAMILY), "internet")
    await world.applied(f"family {ip(FAMILY)} internet")
    assert rules.read_text() == ""


async def test_lists_are_read_again_on_sighup_and_a_broken_one_changes_nothing(
        world: World) -> None:
    assert world.probe("family", "dns", GW, "allowed.example") == SITE
    (world.lists / "social.txt").write_text("||allowed.example^\n")
    await world.reload_lists(lambda v: v == "adult=1 social=1")
    assert world.probe("family", "dns", GW, "allowed.example") == "0.0.0.0"
    assert "allowed.example" in (world.rules_dir / "hyperwall-policy.rules").read_text()
    (world.lists / "broken.txt").mkdir()      # cannot be read as a list
    said = await world.reload_lists(lambda v: v.startswith("error:"))
    assert "broken.txt" in said and said.endswith("kept: adult=1 social=1")
    assert world.probe("family", "dns", GW, "allowed.example") == "0.0.0.0"
    assert world.probe("family", "dns", GW, "blocked.example") == "0.0.0.0"


async def test_a_start_on_lists_that_fail_runs_on_the_last_good_ones_and_says_so(
        world: World) -> None:
    """The bundle in force names a category it does not ship (as one applied before
    policies were validated whole could): its lists fail to load. sys-sec used to start
    with none, and the owner's blocked site passed."""
    assert world.probe("family", "dns", GW, "blocked.example") == "0.0.0.0"
    current = world.state / "bundles" / "current"
    (current / "lists").mkdir(parents=True)
    (current / "lists" / "games.txt").write_text("game.example\n")
    (current / "policy.toml").write_text('[schedules]\nsocial = ["daily 20:00-07:00"]\n')
    said = await world.restart(lambda v: v.startswith("WARNING:"))
    assert "running on the last good lists (1 sites)" in said, said
    assert said.endswith("in force: adult=1")
    assert world.probe("family", "dns", GW, "blocked.example") == "0.0.0.0"
    records = [json.loads(line) for line in
               (world.state / "log" / "dns.json").read_text().splitlines()]
    assert any(r["event_type"] == "alert" and "running on the last good lists" in
               r["alert"]["signature"] and r["alert"]["severity"] == 1 for r in records)
    async with grpc.aio.insecure_channel(f"unix:{world.state / 'security.sock'}") as ch:
        stats = await security_grpc.SecurityServiceStub(ch).GetStats(
            security_pb2.GetStatsRequest())
    assert stats.message.startswith(said), stats.message
    # The positive control: lists that load replace the last good ones, fewer sites said
    # just as loudly, and the probe sees the site pass once nothing blocks it.
    shutil.rmtree(current)
    (world.lists / "adult.txt").unlink()
    said = await world.restart(lambda v: v.startswith("WARNING:"))
    assert "block lists hold 0 sites, fewer than the 1 of the last good lists" in said, said
    assert world.probe("family", "dns", GW, "blocked.example") == ZONE["blocked.example"]


def test_a_reload_the_engine_refuses_is_learnt_from_its_counters(tmp_path: Path) -> None:
    """reload_content used only to SIGHUP hyperwall-ipsd: a reload ipsd refused counted as
    taken, and the updater kept a bundle the engine was not running. Here the real engine
    (on an NFQUEUE of its own namespace) takes good rules and refuses rules of which none
    load, and the controller learns both from its --socket counters."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.rules").write_text('alert http any any -> any any (msg:"a"; sid:1; rev:1;)\n')
    pidfile, sock = tmp_path / "ipsd.pid", tmp_path / "ipsd.sock"
    with lab("hwrl") as net:
        ns = net.ns("s")
        ipsd = start(["ip", "netns", "exec", ns, sys.executable, "-m", "domains.syssec.ipsd",
                      "--queue", "0", "-S", str(rules), "-l", str(tmp_path / "log"),
                      "--pidfile", str(pidfile), "--socket", str(sock)],
                     tmp_path / "ipsd.log")
        try:
            assert ipsd.stdout is not None and ipsd.stdout.readline().strip() == b"ready", \
                (tmp_path / "ipsd.log").read_text()
            d = Launch.defaults(tmp_path)
            ctl = Controller(None, tmp_path, Settings(),
                             Launch(d.lists, d.rules_dir, ipsd_pidfile=pidfile,
                                    ipsd_socket=sock))
            (rules / "b.rules").write_text(
                'alert http any any -> any any (msg:"b"; sid:2; rev:1;)\n')
            ctl.reload_content()                   # the positive control: taken
            assert read_stats(sock)["rules_loaded"] == 2
            for f in rules.glob("*.rules"):
                f.write_text("not a rule\n")
            with pytest.raises(OSError, match="the engine refused the new rules .* keeps its "
                                              "2 running rules"):
                ctl.reload_content()
            assert read_stats(sock)["reload_failures"] == 1
        finally:
            stop(ipsd)
