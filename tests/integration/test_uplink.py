"""sys-sec's host uplink: veth + NAT out of the host's default route, in throwaway
namespaces that play the host, sys-sec and the world beyond (root only)."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from dom0.uplink import UPLINK_IN_SYS_SEC, HostUplink, plug, unplug
from tests.netlab import Lab, lab

pytestmark = pytest.mark.root

SERVER = "192.0.2.80"
# Prints the address each connection came from, then closes it.
WHO = ("import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
       "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(); print('ready', "
       "flush=True)\nwhile True:\n c, a = s.accept(); c.sendall(a[0].encode()); c.close()")


@pytest.fixture
def world() -> Iterator[tuple[Lab, str, str]]:
    with lab("hwup") as net:
        host, sys_sec, inet = net.ns("host"), net.ns("sec"), net.ns("inet")
        net.link(host, "eth0", inet, "eth0")
        net.run(host, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")
        net.run(host, "ip", "route", "add", "default", "via", "192.0.2.254")
        net.run(inet, "ip", "addr", "add", "192.0.2.254/24", "dev", "eth0")
        net.run(inet, "ip", "addr", "add", f"{SERVER}/32", "dev", "lo")
        yield net, host, sys_sec


async def test_sys_sec_reaches_the_world_through_the_hosts_nat_and_unplug_removes_it(
        world: tuple[Lab, str, str]) -> None:
    net, host, sys_sec = world
    inet = net.namespaces[-1]
    server = subprocess.Popen(["ip", "netns", "exec", inet, "python3", "-c", WHO],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        await plug(sys_sec, host_netns=host)
        addr = net.run(sys_sec, "ip", "-4", "-o", "addr", "show", UPLINK_IN_SYS_SEC)
        assert HostUplink().sys_sec_ip in addr.stdout.decode()
        got = net.run(sys_sec, "python3", "-c", "import socket; s = socket.create_connection("
                      f"('{SERVER}', 8080), timeout=5); print(s.recv(64).decode())")
        assert got.stdout.decode().strip() == "192.0.2.1"   # NATed to the host's address
        await plug(sys_sec, host_netns=host)   # again: replaces, does not stack
        rules = net.run(host, "iptables", "-t", "nat", "-S").stdout.decode()
        assert rules.count("-j HW-UPLINK") == 1
        await unplug(host_netns=host)
        assert "hw-uplink" not in net.run(host, "ip", "-o", "link").stdout.decode()
        assert "HW-UPLINK" not in net.run(host, "iptables", "-t", "nat", "-S").stdout.decode()
        assert UPLINK_IN_SYS_SEC not in net.run(sys_sec, "ip", "-o", "link").stdout.decode()
    finally:
        server.kill()
        server.wait()
