"""sys-sec's IPv4 walls through the real controller (issue 13, item 5), one guest per policy,
each observed where a leak would arrive: a listener counting what it gets per source and
tag (tests/wall_probes.py) and sys-sec's own drop counters. Every test carries its positive
control (the same probe, allowed, arrives) and a `mutation` parameter that removes the rule
it guards at runtime in sys-sec's namespace and expects the leak.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dom0.sim.net import LAN_HOST
from tests.conftest import Daemon
from tests.syssec_lab import INET, SysSec, ip, sys_sec
from tests.wall_probes import Counting, counter, counting, removed, send

pytestmark = pytest.mark.root

GUESTS = {"inet-guest": (21, "internet"), "lan-guest": (22, "lan"),
          "family": (23, "filtered"), "work": (24, "vpn-only"), "cut-off": (25, "offline")}
# Guests whose policy lets them out of the uplink: the ones with something to spoof through.
OUTWARD = ("inet-guest", "lan-guest", "family")
PORT = 9000
OUTSIDE = "203.0.113.66"          # a forged source outside the guest range (no NAT for it)


@pytest.fixture
async def walls(hw_xenstored: Daemon, tmp_path: Path) -> AsyncIterator[SysSec]:
    async with sys_sec(hw_xenstored, tmp_path, GUESTS, engine=False, far=(LAN_HOST,),
                       prefix="hwwl") as w:
        yield w


def spoof_rule(w: SysSec, guest: str) -> str:
    return f"-i vif{w.domids[guest]}.0 ! -s {ip(w.domids[guest])}/32 -j DROP"


def lan_rule(w: SysSec, guest: str) -> str:
    return f"-i vif{w.domids[guest]}.0 -o uplink0 -d 192.168.0.0/16 -j DROP"


@pytest.mark.parametrize("mutation", ["none", "remove-antispoof"])
def test_a_forged_source_never_reaches_the_far_side(walls: SysSec, mutation: str) -> None:
    w = walls
    changes = [f"-D HW-SPOOF {spoof_rule(w, g)}" for g in OUTWARD] \
        if mutation == "remove-antispoof" else []
    with counting(w.ns["inet"], f"udp,{INET},{PORT}") as far, removed(w.ns["sec"], *changes):
        before = {g: counter(w.ns["sec"], "HW-SPOOF", spoof_rule(w, g))
                  for g in OUTWARD if not changes}
        for n, g in enumerate(OUTWARD):
            # Another guest's address (NATed like its own, so told apart by the tag) and an
            # address outside the guest range (arriving as forged, if it arrives).
            other = ip(w.domids[OUTWARD[(n + 1) % len(OUTWARD)]])
            send(w.ns[g], f"udp,{INET},{PORT},true-{g}",
                 f"spoof,{INET},{PORT},peer-{g},{other}",
                 f"spoof,{INET},{PORT},outside-{g},{OUTSIDE}")
        for g in OUTWARD:   # the positive control: the same datagram, true source, arrives
            assert far.wait_for_tag(f"true-{g}"), f"{g}'s own datagram did not arrive"
        far.settle()
        forged = {tag for tag in far.tags() if not tag.startswith("true-")}
        if changes:
            assert forged == {f"{kind}-{g}" for g in OUTWARD for kind in ("peer", "outside")}
            assert {src for _, src, tag in far.heard() if tag.startswith("outside-")} \
                == {OUTSIDE}, far.heard()
        else:
            assert not forged, far.heard()
            for g in OUTWARD:
                assert counter(w.ns["sec"], "HW-SPOOF", spoof_rule(w, g)) >= before[g] + 2, \
                    f"sys-sec's anti-spoofing rule for {g} counted no drop"


@pytest.mark.parametrize("mutation", ["none", "remove-isolation"])
def test_no_guest_reaches_another_in_either_direction(walls: SysSec, mutation: str) -> None:
    w = walls
    # Isolation is FORWARD's DROP policy: no rule forwards from one vif to another.
    changes = ["-P FORWARD ACCEPT"] if mutation == "remove-isolation" else []
    listeners = {}
    try:
        for g in GUESTS:
            listeners[g] = Counting(w.ns[g], f"udp,{ip(w.domids[g])},{PORT}",
                                    f"tcp,{ip(w.domids[g])},{PORT}")
        with removed(w.ns["sec"], *changes):
            for src in GUESTS:
                send(w.ns[src], *(f"{proto},{ip(w.domids[dst])},{PORT},{proto}-{src}-to-{dst}"
                                  for dst in GUESTS if dst != src for proto in ("udp", "tcp")))
            for listener in listeners.values():
                listener.settle()    # the positive control: reachable from its own side
            arrived = {tag for listener in listeners.values() for tag in listener.tags()}
        pairs = {f"{proto}-{src}-to-{dst}" for src in GUESTS for dst in GUESTS if src != dst
                 for proto in ("udp", "tcp")}
        if changes:
            assert arrived == pairs, sorted(pairs - arrived)
        else:
            assert not arrived, sorted(arrived)
    finally:
        for listener in listeners.values():
            listener.stop()


@pytest.mark.parametrize("mutation", ["none", "remove-lan-drop"])
def test_the_far_side_is_reached_by_outward_policies_and_the_lan_host_by_lan_alone(
        walls: SysSec, mutation: str) -> None:
    w = walls
    others = ("inet-guest", "family")       # the policies that refuse the LAN by a rule
    changes = [f"-D HW-FORWARD {lan_rule(w, g)}" for g in others] \
        if mutation == "remove-lan-drop" else []
    with counting(w.ns["inet"], f"udp,{LAN_HOST},{PORT}", f"tcp,{LAN_HOST},{PORT}",
                  f"udp,{INET},{PORT}") as far, removed(w.ns["sec"], *changes):
        before = {g: counter(w.ns["sec"], "HW-FORWARD", lan_rule(w, g))
                  for g in others if not changes}
        outcomes = {g: send(w.ns[g], f"udp,{LAN_HOST},{PORT},lan-{g}",
                            f"tcp,{LAN_HOST},{PORT},lan-{g}", f"udp,{INET},{PORT},far-{g}")
                    for g in GUESTS}
        # The positive control, end to end: the lan guest's connection is accepted.
        assert outcomes["lan-guest"][1] == "OPEN"
        assert far.wait_for_tag("lan-lan-guest")
        far.settle()
        heard = far.heard()
        reached = {(proto, tag) for proto, _, tag in heard}
        # The uplink but not the tunnel or nothing: vpn-only and offline never get there.
        assert {tag for _, tag in reached if tag.startswith("far-")} == \
            {f"far-{g}" for g in OUTWARD}, heard
        lan = {g for g in GUESTS if {("udp", f"lan-{g}"), ("tcp", f"lan-{g}")} & reached}
        if changes:
            assert lan == {"lan-guest", *others}, heard
        else:
            assert lan == {"lan-guest"}, (heard, outcomes)
            assert all(outcomes[g][1] == "TIMEOUT" for g in GUESTS if g != "lan-guest"), \
                outcomes
            for g in others:
                assert counter(w.ns["sec"], "HW-FORWARD", lan_rule(w, g)) >= before[g] + 2
