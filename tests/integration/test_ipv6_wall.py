"""No IPv6 to or from any guest, whatever its policy (issue 12, item 4), through the real
controller: one guest per policy, each sending IPv6 to sys-sec's sockets (every socket `ss`
lists, over link-local, multicast and sys-sec's uplink address), to another guest (its
link-local and a routed address) and to the far side; and the far side and sys-sec sending
IPv6 to each guest. Each is observed where it would arrive: a listener logging what it
gets, and sys-sec's per-interface kernel counter of IPv6 packets delivered to its stack.

To have something to leak, the test routes IPv6 as a careless sys-sec would: forwarding
on, addresses on the guests, the vifs, the uplink and the far side (fd00::/8). The
`layers` parameter removes sys-sec's two walls at runtime (the ip6tables ruleset, the
guest interfaces' disable_ipv6): with either one alone nothing arrives, with neither the
same probes arrive (the positive control).
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.syssec_lab import LISTEN, Listener, SysSec, sys_sec

pytestmark = pytest.mark.root

GUESTS = {"inet-guest": (11, "internet"), "lan-guest": (12, "lan"),
          "family": (13, "filtered"), "work": (14, "vpn-only"), "cut-off": (15, "offline")}
PORT = 7000                           # every guest's and the far side's listener
STAND_INS = ("udp:51820", "tcp:50443")   # sys-sec's [::] sockets: wireguard-go, a provider
SEC_LL, SEC_UPLINK, FAR = "fe80::1", "fd00:51::2", "fd00:51::1"

# Send each `udp|tcp ADDR PORT` target three datagrams or one connection attempt, all at
# once; returns after 0.5 s whatever happened (the receivers say what arrived).
PROBE = r"""
import select, socket, sys, time
pending = []
for spec in sys.argv[1:]:
    proto, addr, port = spec.split(",")
    info = socket.getaddrinfo(addr, int(port), socket.AF_INET6)[0][4]
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        if proto == "udp":
            for _ in range(3):
                s.sendto(b"probe", info)
        else:
            s.connect_ex(info)
    except OSError:
        pass
    pending.append(s)
deadline = time.monotonic() + 0.5
while time.monotonic() < deadline:
    select.select([], [], [], 0.05)
"""


def guest6(domid: int) -> str:
    return f"fd00:137::{domid}"


def configure_ipv6(w: SysSec) -> None:
    """IPv6 addresses and routes everywhere, as a sys-sec routing IPv6 would have them; on
    a vif whose IPv6 is off the kernel refuses them (check=False), and that is the wall."""
    w.run("sec", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    w.run("sec", "ip", "-6", "addr", "add", f"{SEC_UPLINK}/64", "dev", "uplink0", "nodad")
    w.run("inet", "ip", "-6", "addr", "add", f"{FAR}/64", "dev", "eth0", "nodad")
    w.run("inet", "ip", "-6", "route", "add", "fd00:137::/64", "via", SEC_UPLINK)
    for name, domid in w.domids.items():
        vif = f"vif{domid}.0"
        w.run(name, "ip", "-6", "addr", "add", f"fe80::{domid:x}/64", "dev", "eth0", "nodad")
        w.run(name, "ip", "-6", "addr", "add", f"{guest6(domid)}/128", "dev", "eth0", "nodad")
        w.run(name, "ip", "-6", "route", "add", "default", "via", SEC_LL, "dev", "eth0")
        w.run("sec", "ip", "-6", "addr", "add", f"{SEC_LL}/64", "dev", vif, "nodad", check=False)
        w.run("sec", "ip", "-6", "route", "add", f"{guest6(domid)}/128", "dev", vif,
              check=False)


def remove_layers(w: SysSec, layers: str) -> None:
    if layers in ("sysctl", "neither"):     # the ip6tables ruleset goes
        w.run("sec", "ip6tables", "-P", "INPUT", "ACCEPT")
        w.run("sec", "ip6tables", "-P", "FORWARD", "ACCEPT")
        w.run("sec", "ip6tables", "-F")
    if layers in ("ip6tables", "neither"):  # IPv6 comes back on the guest interfaces
        for domid in w.domids.values():
            w.run("sec", "sysctl", "-qw", f"net.ipv6.conf.vif{domid}/0.disable_ipv6=0")


def delivered(w: SysSec, vif: str) -> int:
    """IPv6 packets that came in on `vif` and were delivered to sys-sec's own stack."""
    text = w.run("sec", "cat", f"/proc/net/dev_snmp6/{vif}", check=False)
    counters = dict(line.split() for line in text.splitlines() if line.strip())
    return int(counters.get("Ip6InDelivers", 0))


def guest6_counter(w: SysSec, vif: str) -> int:
    """ip6tables' count of `vif`'s packets in HW-GUEST6 (both directions)."""
    out = w.run("sec", "ip6tables", "-L", "HW-GUEST6", "-v", "-x", "-n", check=False)
    return sum(int(line.split()[0]) for line in out.splitlines()
               if f" {vif} " in f" {line} ")


def sockets(w: SysSec) -> list[tuple[str, int]]:
    """Every listening TCP and UDP socket in sys-sec's namespace, as (proto, port)."""
    out = w.run("sec", "ss", "-H", "-lntu")
    return sorted({(line.split()[0], int(line.split()[4].rpartition(":")[2]))
                   for line in out.splitlines() if line.strip()})


@pytest.fixture(params=["both", "ip6tables", "sysctl", "neither"])
async def world(request: pytest.FixtureRequest, hw_xenstored: Daemon,
                tmp_path: Path) -> AsyncIterator[tuple[SysSec, str]]:
    async with sys_sec(hw_xenstored, tmp_path, GUESTS, engine=False, prefix="hw6") as w:
        remove_layers(w, request.param)
        configure_ipv6(w)
        yield w, request.param


def sentinel(w: SysSec, where: str, listener: Listener, port: int) -> None:
    """The listener is alive and hears its own namespace: what it has not logged by the
    time this arrives did not reach it."""
    w.py(where, PROBE, f"udp,::1,{port}")
    assert listener.wait_for(lambda line: line == f"udp {port} ::1", 5), "listener deaf"


def sources(listener: Listener) -> set[str]:
    """Where what the listener got since the last call came from."""
    return {line.split()[2].split("%")[0] for line in listener.take()}


async def test_guests_ipv6_reaches_nothing_and_nothing_reaches_them(
        world: tuple[SysSec, str]) -> None:
    w, layers = world
    leak_expected = layers == "neither"
    listeners = {where: w.listen(where, LISTEN, f"udp:{PORT}", f"tcp:{PORT}")
                 for where in (*GUESTS, "inet")}
    stand_ins = w.listen("sec", LISTEN, *STAND_INS)
    try:
        found = sockets(w)
        assert ("udp", 51820) in found and ("tcp", 50443) in found and ("udp", 53) in found
        names = list(GUESTS)
        for n, name in enumerate(names):
            domid, vif = w.domids[name], f"vif{w.domids[name]}.0"
            peer = names[(n + 1) % len(names)]
            peer_id = w.domids[peer]
            before = delivered(w, vif)
            targets = [f"{proto},{addr},{port}" for proto, port in found
                       for addr in (f"{SEC_LL}%eth0", SEC_UPLINK)]
            targets += [f"udp,ff02::1%eth0,{port}" for proto, port in found if proto == "udp"]
            targets += [f"{proto},{addr},{PORT}" for proto in ("udp", "tcp")
                        for addr in (f"fe80::{peer_id:x}%eth0", guest6(peer_id), FAR)]
            w.py(name, PROBE, *targets)
            # The far side and sys-sec itself, towards this guest.
            w.py("inet", PROBE, f"udp,{guest6(domid)},{PORT}", f"tcp,{guest6(domid)},{PORT}")
            w.py("sec", PROBE, f"udp,fe80::{domid:x}%{vif},{PORT}",
                 f"udp,{guest6(domid)},{PORT}")
            for where, port in ((peer, PORT), ("inet", PORT), (name, PORT)):
                sentinel(w, where, listeners[where], port)
            sentinel(w, "sec", stand_ins, 51820)
            from_me = {f"fe80::{domid:x}", guest6(domid)}
            got = {
                "to sys-sec's sockets": bool(sources(stand_ins) & from_me),
                "into sys-sec's stack": delivered(w, vif) > before,
                "to another guest": bool(sources(listeners[peer]) & from_me),
                "to the far side": bool(sources(listeners["inet"]) & from_me),
                "from the far side or sys-sec": bool(
                    sources(listeners[name]) & {FAR, SEC_UPLINK, SEC_LL}),
            }
            if leak_expected:
                # Link-local to another guest never crosses sys-sec (the kernel never forwards
                # it); every other probe arrives once both walls are gone.
                assert all(got.values()), (name, got)
            else:
                assert not any(got.values()), (name, layers, got)
            if layers == "ip6tables":
                assert guest6_counter(w, vif) > 0, "the drops are counted per guest"
    finally:
        for listener in (*listeners.values(), stand_ins):
            listener.stop()
