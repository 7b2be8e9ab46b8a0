"""The compiled ruleset in a real namespace: the kernel accepts it and enforces it.

Topology: guest (eth0 10.137.0.3) -- vif2.0 [sys] uplink0 -- (eth0 198.51.100.1) inet,
and a second guest behind vif3.0. Probes are single pings with short deadlines.
"""
from __future__ import annotations

import pytest

from netsec.firewall import FirewallConfig, Vif, compile_rulesets
from tests.netlab import Lab, lab

pytestmark = pytest.mark.root
GW = "10.137.255.254"


def build(net: Lab) -> dict[str, str]:
    sys_, g1, g2, inet = net.ns("sys"), net.ns("g1"), net.ns("g2"), net.ns("inet")
    net.link(g1, "eth0", sys_, "vif2.0")
    net.link(g2, "eth0", sys_, "vif3.0")
    net.link(sys_, "uplink0", inet, "eth0")
    net.run(sys_, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for g, ip, vif in ((g1, "10.137.0.3", "vif2.0"), (g2, "10.137.0.4", "vif3.0")):
        net.run(g, "ip", "addr", "add", f"{ip}/32", "dev", "eth0")
        net.run(g, "ip", "route", "add", GW, "dev", "eth0", "scope", "link")
        net.run(g, "ip", "route", "add", "default", "via", GW)
        net.run(sys_, "ip", "addr", "add", f"{GW}/32", "dev", vif)
        net.run(sys_, "ip", "route", "add", f"{ip}/32", "dev", vif)
    net.run(sys_, "ip", "addr", "add", "198.51.100.2/24", "dev", "uplink0")
    net.run(inet, "ip", "addr", "add", "198.51.100.1/24", "dev", "eth0")
    net.run(inet, "ip", "addr", "add", "192.168.1.1/32", "dev", "lo")  # stands for the LAN
    net.run(sys_, "ip", "route", "add", "192.168.1.1/32", "via", "198.51.100.1")
    return {"sys": sys_, "g1": g1, "g2": g2, "inet": inet}


def ping(net: Lab, ns: str, dst: str, *extra: str) -> bool:
    return net.run(ns, "ping", "-c1", "-W1", *extra, dst, check=False).returncode == 0


def apply(net: Lab, sys_ns: str, cfg: FirewallConfig, vifs: list[Vif]) -> None:
    net.run(sys_ns, "iptables-restore", input=compile_rulesets(cfg, vifs).ipv4.encode())


def test_policies_enforced_by_the_kernel() -> None:
    with lab("hwfw") as net:
        n = build(net)
        cfg = FirewallConfig(uplink="uplink0", gateway=GW, queue=None)
        apply(net, n["sys"], cfg, [Vif(2, 0, "10.137.0.3", "internet"),
                                 Vif(3, 0, "10.137.0.4", "offline")])
        assert ping(net, n["g1"], "198.51.100.1"), "internet guest reaches the internet"
        assert not ping(net, n["g1"], "192.168.1.1"), "internet guest must not reach the LAN"
        assert not ping(net, n["g1"], "10.137.0.4"), "guests must not reach each other"
        assert not ping(net, n["g2"], "198.51.100.1"), "offline guest reaches nothing"
        assert ping(net, n["g1"], GW), "the gateway answers ping"
        # A spoofed source: the guest takes the other guest's address.
        net.run(n["g1"], "ip", "addr", "add", "10.137.0.9/32", "dev", "eth0")
        assert not ping(net, n["g1"], "198.51.100.1", "-I", "10.137.0.9")


def test_fail_closed_without_an_engine_listening() -> None:
    with lab("hwfc") as net:
        n = build(net)
        vifs = [Vif(2, 0, "10.137.0.3", "internet")]
        apply(net, n["sys"], FirewallConfig(uplink="uplink0", gateway=GW, queue=None), vifs)
        assert ping(net, n["g1"], "198.51.100.1"), "the path works without the queue"
        apply(net, n["sys"], FirewallConfig(uplink="uplink0", gateway=GW, queue=0), vifs)
        assert not ping(net, n["g1"], "198.51.100.1"), "nothing passes while no engine listens"
