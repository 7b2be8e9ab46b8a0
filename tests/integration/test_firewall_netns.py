"""The compiled ruleset in a real namespace, applied by hand (no controller): with a queue
named and no engine listening, nothing passes (fail closed).

Topology: guest (eth0 10.137.0.3) -- vif2.0 [sys] uplink0 -- (eth0 198.51.100.1) inet.
Every other wall (anti-spoofing, isolation between guests, the LAN, sys-sec's own sockets)
is tested through the real controller, observed at the receiving side and with the rule
removed at runtime: test_walls.py, test_stories.py.
"""
from __future__ import annotations

import pytest

from netsec.firewall import FirewallConfig, Vif, compile_rulesets
from tests.netlab import Lab, lab
from tests.wall_probes import counting, send

pytestmark = pytest.mark.root
GW = "10.137.255.254"
FAR = "198.51.100.1"


def build(net: Lab) -> dict[str, str]:
    sys_, g1, inet = net.ns("sys"), net.ns("g1"), net.ns("inet")
    net.link(g1, "eth0", sys_, "vif2.0")
    net.link(sys_, "uplink0", inet, "eth0")
    net.run(sys_, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    net.run(g1, "ip", "addr", "add", "10.137.0.3/32", "dev", "eth0")
    net.run(g1, "ip", "route", "add", GW, "dev", "eth0", "scope", "link")
    net.run(g1, "ip", "route", "add", "default", "via", GW)
    net.run(sys_, "ip", "addr", "add", f"{GW}/32", "dev", "vif2.0")
    net.run(sys_, "ip", "route", "add", "10.137.0.3/32", "dev", "vif2.0")
    net.run(sys_, "ip", "addr", "add", "198.51.100.2/24", "dev", "uplink0")
    net.run(inet, "ip", "addr", "add", f"{FAR}/24", "dev", "eth0")
    return {"sys": sys_, "g1": g1, "inet": inet}


def apply(net: Lab, sys_ns: str, cfg: FirewallConfig, vifs: list[Vif]) -> None:
    net.run(sys_ns, "iptables-restore", input=compile_rulesets(cfg, vifs).ipv4.encode())


def test_fail_closed_without_an_engine_listening() -> None:
    with lab("hwfc") as net:
        n = build(net)
        vifs = [Vif(2, 0, "10.137.0.3", "internet")]
        with counting(n["inet"], f"tcp,{FAR},9000") as far:
            apply(net, n["sys"], FirewallConfig(uplink="uplink0", gateway=GW, queue=None),
                  vifs)
            assert send(n["g1"], f"tcp,{FAR},9000,unqueued") == ["OPEN"], \
                "the path works without the queue"
            apply(net, n["sys"], FirewallConfig(uplink="uplink0", gateway=GW, queue=0), vifs)
            assert send(n["g1"], f"tcp,{FAR},9000,queued") == ["TIMEOUT"]
            far.settle()
            assert far.tags() == {"unqueued"}, "nothing passes while no engine listens"
