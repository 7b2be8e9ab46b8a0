"""Two hyperwall-ipsd workers behind `--queue-balance 0:1`, as sys-sec's firewall queues for
two workers (netsec.firewall's own HW-IPS rules): client -- sys-sec -- server namespaces,
a dozen client addresses (the kernel balances by address pair), UDP echo traffic.

Each worker runs under its own supervisor and logs to its own folder here, so that an alert
names the worker that saw it. The rule alerts on the server's reply only as `to_client`, which
a worker can say only if it also saw the request that opened the flow: a reply reaching the
other worker would be the first packet of a new flow there, `to_server`, and not match."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from domains.syssec.ipsd import read_stats
from netsec.firewall import FirewallConfig, _ips_target
from proto.gen.hyperwall.netsec.v1 import security_pb2 as pb
from proto.gen.hyperwall.netsec.v1 import security_pb2_grpc as pb_grpc
from tests.integration.test_ipsd_inline import PY, REPO, SERVER, _start, wait_for
from tests.netlab import Lab, inline_wall, lab, stop_all

pytestmark = pytest.mark.root
# A random hash seed per rule picks each address's queue, so with 12 addresses both workers
# get some unless all 12 fall on one side (1 in 2048).
CLIENTS = [f"10.137.0.{n}" for n in range(10, 22)]
REPLY_RULE = ('alert udp any 7777 -> any any (msg:"echo reply seen by the worker that saw '
              'the request"; flow:to_client; sid:9100001; rev:1;)\n')
RELOAD_RULE = ('drop udp any any -> any 7777 (msg:"added by a reload: no more echo"; '
               'sid:9100002; rev:1;)\n')
# A TCP echo in the server's namespace, and a client holding one connection: it sends a
# line per line of its stdin and prints each echo (or "CLOSED"), so a test can send
# across a reload on the same connection.
TCP_ECHO = r"""
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
import threading
def echo(c):
    with c:
        while data := c.recv(4096):
            c.sendall(data)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
"""
TCP_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5,
                             source_address=(sys.argv[3], 0))
print("ready", flush=True)
for line in sys.stdin:
    c.sendall(line.encode())
    try:
        print(c.recv(4096).decode().strip() or "CLOSED", flush=True)
    except OSError as e:
        print("CLOSED", e, flush=True)
"""


def firewall() -> bytes:
    ips = _ips_target(FirewallConfig(uplink="up0", gateway="10.137.0.1", queue=0,
                                     queue_count=2))
    assert ips[-1].endswith("--queue-balance 0:1"), ips
    return ("*filter\n:FORWARD DROP [0:0]\n:HW-IPS - [0:0]\n-A FORWARD -j HW-IPS\n"
            + "\n".join(ips) + "\nCOMMIT\n").encode()


@dataclass
class Pool:
    net: Lab
    ns: dict[str, str]
    dir: Path

    def security(self) -> pb_grpc.SecurityServiceStub:
        return pb_grpc.SecurityServiceStub(
            grpc.insecure_channel(f"unix:{self.dir / 'security.sock'}"))

    def stats(self, worker: int) -> dict[str, Any]:
        return read_stats(self.dir / f"ipsd.sock.{worker}")

    def supervisor(self, worker: int) -> int:
        return int((self.dir / f"supervise.pid.{worker}").read_text())

    def probe(self, source: str, seconds: float, until_reply: bool = False) -> dict[str, Any]:
        r = self.net.run(self.ns["client"], PY, str(REPO / "tests/udp_probe.py"), "probe",
                         SERVER, "7777", str(seconds), "--from", source,
                         *(["--until-reply"] * until_reply), timeout=seconds + 10)
        return dict(json.loads(r.stdout))

    def replies_seen(self, worker: int) -> set[str]:
        """The client addresses whose echo replies this worker saw as replies."""
        path = self.dir / f"log.{worker}" / "eve.json"
        events = [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []
        return {e["dest_ip"] for e in events if e["event_type"] == "alert"
                and e["alert"]["signature_id"] == 9100001}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    d = tmp_path_factory.mktemp("ipsdpool")
    (d / "rules").mkdir()
    (d / "rules" / "local.rules").write_text(REPLY_RULE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with lab("hwqb") as net:
        ns = inline_wall(net, firewall(), CLIENTS, SERVER)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(_start(["ip", "netns", "exec", ns["server"], PY,
                                 str(REPO / "tests/udp_probe.py"), "echo", SERVER, "7777"],
                                env))
            for w in (0, 1):
                procs.append(_start(
                    ["ip", "netns", "exec", ns["sys"], PY, "-m", "domains.supervise",
                     "--pidfile", str(d / f"supervise.pid.{w}"), "--", PY, "-m",
                     "domains.syssec.ipsd", "--queue", str(w), "-S", str(d / "rules"),
                     "-l", str(d / f"log.{w}"), "--socket", str(d / f"ipsd.sock.{w}"),
                     "--pidfile", str(d / f"ipsd.pid.{w}")], env))
            procs.append(_start(["ip", "netns", "exec", ns["server"], PY, "-c", TCP_ECHO,
                                 SERVER, "9000"], env))
            procs.append(_start(
                [PY, "-m", "domains.syssec.security_service", "-l", str(d / "log.0"),
                 "--socket", str(d / "security.sock"),
                 *(arg for w in (0, 1) for arg in ("--ipsd-socket", str(d / f"ipsd.sock.{w}"))),
                 *(arg for w in (0, 1) for arg in ("--ipsd-pidfile", str(d / f"ipsd.pid.{w}")))],
                env))
            yield Pool(net, ns, d)
        finally:
            stop_all(procs)


def owners(pool: Pool) -> dict[int, set[str]]:
    """Which worker holds each client's flow, from the replies each saw as replies."""
    for addr in CLIENTS:
        assert pool.probe(addr, 5.0, until_reply=True)["first_reply"] is not None, addr
    return wait_for("every client's reply seen by a worker", lambda: (
        seen if (seen := {w: pool.replies_seen(w) for w in (0, 1)})
        and seen[0] | seen[1] == set(CLIENTS) else None))


def test_both_directions_of_each_flow_reach_the_same_worker(pool: Pool) -> None:
    seen = owners(pool)
    assert not seen[0] & seen[1], f"a client's replies were seen by both workers: {seen}"
    assert seen[0] and seen[1], f"one worker got every flow: {seen}"
    for w in (0, 1):
        assert pool.stats(w)["queue"]["received"] >= 2 * len(seen[w])
    print(f"\nworker 0 holds {len(seen[0])} clients, worker 1 holds {len(seen[1])}")


def test_a_dead_worker_forwards_nothing_while_the_other_keeps_going(pool: Pool) -> None:
    seen = owners(pool)
    sup = pool.supervisor(0)
    # Hold worker 0's supervisor so the worker stays down, then kill the worker.
    os.kill(sup, signal.SIGSTOP)
    try:
        os.kill(int(pool.stats(0)["pid"]), signal.SIGKILL)
        for addr in CLIENTS:
            got = pool.probe(addr, 0.3)
            if addr in seen[0]:
                assert got["sent"] > 20 and got["replies"] == 0, f"{addr} passed: {got}"
            else:   # the positive control: worker 1's clients are unaffected
                assert got["replies"] > 0, f"{addr} (worker 1) got no replies: {got}"
        stats = pool.security().GetStats(pb.GetStatsRequest(), timeout=10)
        assert stats.engine == "degraded" and "1 of 2 workers" in stats.message, stats
        assert "ipsd.sock.0" in stats.message and stats.pid == pool.stats(1)["pid"]
    finally:
        os.kill(sup, signal.SIGCONT)
    wait_for("the restarted worker 0", lambda: pool.stats(0)["pid"])
    for addr in sorted(seen[0]):
        assert pool.probe(addr, 5.0, until_reply=True)["first_reply"] is not None, addr


def test_one_security_service_view_over_both_workers(pool: Pool) -> None:
    owners(pool)
    got = pool.security().GetStats(pb.GetStatsRequest(), timeout=10)
    workers = [pool.stats(w) for w in (0, 1)]
    assert got.engine == "running", got.message
    per = json.loads(got.stats_json)["workers"]
    assert [w["pid"] for w in per] == [w["pid"] for w in workers]
    # Summed: each worker's count only grows, so the view lies between two readings.
    assert sum(w["queue"]["received"] for w in per) == got.queue_received
    assert got.queue_received <= sum(w["queue"]["received"] for w in workers)
    assert got.rules_loaded == 1 and got.pid == workers[0]["pid"]


def test_a_reload_reaches_every_worker_and_open_flows_survive_it(pool: Pool) -> None:
    seen = owners(pool)
    # One TCP connection through each worker, opened before the reload.
    clients = [subprocess.Popen(
        ["ip", "netns", "exec", pool.ns["client"], PY, "-u", "-c", TCP_CLIENT, SERVER, "9000",
         sorted(seen[w])[0]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for w in (0, 1)]
    try:
        for c in clients:
            assert c.stdin is not None and c.stdout is not None
            assert c.stdout.readline() == "ready\n"
            c.stdin.write("before\n")
            c.stdin.flush()
            assert c.stdout.readline() == "before\n"
        before = [pool.stats(w) for w in (0, 1)]
        (pool.dir / "rules" / "reload.rules").write_text(RELOAD_RULE)
        try:
            reply = pool.security().Reload(pb.ReloadRequest(), timeout=60)
            assert reply.rules_loaded == 2, reply.message
            after = [pool.stats(w) for w in (0, 1)]
            for w in (0, 1):
                assert after[w]["reloads"] == before[w]["reloads"] + 1, after[w]
                assert after[w]["pid"] == before[w]["pid"] and after[w]["rules_loaded"] == 2
            # Observed at the client: the new rule holds on both workers' clients (each got
            # replies a moment ago, the positive control).
            for addr in (sorted(seen[0])[0], sorted(seen[1])[0]):
                got = pool.probe(addr, 0.3)
                assert got["sent"] > 20 and got["replies"] == 0, f"{addr}: {got}"
            # The connections opened before the reload still carry data both ways.
            for c in clients:
                assert c.stdin is not None and c.stdout is not None
                c.stdin.write("after\n")
                c.stdin.flush()
                assert c.stdout.readline() == "after\n"
        finally:
            (pool.dir / "rules" / "reload.rules").unlink()
            pool.security().Reload(pb.ReloadRequest(), timeout=60)
        for addr in CLIENTS:
            assert pool.probe(addr, 5.0, until_reply=True)["first_reply"] is not None, addr
    finally:
        for c in clients:
            c.kill()
            c.wait()
