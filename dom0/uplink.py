"""sys-sec's uplink on a real host: a veth from the host into sys-sec, NATed out of the
host's default route. sys-sec is then the host's only way for guests to reach anything.

    host: hw-uplink  100.127.255.1/30  --veth--  uplink0  100.127.255.2/30  :sys-sec
          MASQUERADE of 100.127.255.0/30 out of the host's default route

The address pair comes from 100.64.0.0/10 (carrier-grade NAT space), which home and office
networks do not use. In tests and the demo the uplink is instead the simulated internet,
which plugs its own cable into sys-sec (`dom0.sim.net`). `host_netns` lets a test play the
host in a throwaway namespace; None is the real host.

On Xen the cable is a vif of sys-sec's whose backend is dom0 (`XenHostUplink`): netback
makes `vif<sys-sec>.0` in dom0, which gets the host's address; sys-sec's agent configures
its end (`uplink0`) from the backend directory, where dom0 writes the gateway before it
says the hotplug is done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dom0.backends.base import DomainHandle
from dom0.backends.ns import netns_name
from domains.runner import CommandError, run

UPLINK_IN_SYS_SEC = "uplink0"


@dataclass(frozen=True)
class HostUplink:
    host_if: str = "hw-uplink"
    host_ip: str = "100.127.255.1"
    sys_sec_ip: str = "100.127.255.2"
    prefix: int = 30
    chain: str = "HW-UPLINK"

    @property
    def network(self) -> str:
        return f"100.127.255.0/{self.prefix}"


async def _host(argv: list[str], host_netns: str | None, check: bool = True) -> None:
    await run(argv, netns=host_netns, check=check)


async def plug(sys_sec_netns: str, up: HostUplink = HostUplink(),
               host_netns: str | None = None, *, masquerade: bool = True) -> None:
    """Create the veth, address both ends, route sys-sec's default via the host, and NAT.

    Idempotent: a stale uplink (a sys-sec from before a crash) is replaced."""
    await unplug(up, host_netns)
    try:
        await _host(["ip", "link", "add", up.host_if, "type", "veth", "peer", "name",
                     UPLINK_IN_SYS_SEC, "netns", sys_sec_netns], host_netns)
        await _host(["ip", "addr", "add", f"{up.host_ip}/{up.prefix}", "dev", up.host_if],
                    host_netns)
        await _host(["ip", "link", "set", up.host_if, "up"], host_netns)
        await run(["ip", "-n", sys_sec_netns, "-batch", "-"], input=(
            f"addr add {up.sys_sec_ip}/{up.prefix} dev {UPLINK_IN_SYS_SEC}\n"
            f"link set {UPLINK_IN_SYS_SEC} up\n"
            f"route replace default via {up.host_ip} dev {UPLINK_IN_SYS_SEC}\n").encode())
        if masquerade:
            await nat(up, up.host_if, host_netns)
    except CommandError:
        await unplug(up, host_netns)
        raise


async def nat(up: HostUplink, host_if: str, host_netns: str | None = None) -> None:
    """Forward and MASQUERADE sys-sec's side out of the host's default route."""
    await _host(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], host_netns)
    # Our own chain, so unplugging removes exactly what plugging added.
    await _host(["iptables", "-t", "nat", "-N", up.chain], host_netns)
    await _host(["iptables", "-t", "nat", "-A", up.chain, "-s", up.network, "!", "-o",
                 host_if, "-j", "MASQUERADE"], host_netns)
    await _host(["iptables", "-t", "nat", "-A", "POSTROUTING", "-j", up.chain], host_netns)


async def unnat(up: HostUplink, host_netns: str | None = None) -> None:
    await _host(["iptables", "-t", "nat", "-D", "POSTROUTING", "-j", up.chain], host_netns,
                check=False)
    await _host(["iptables", "-t", "nat", "-F", up.chain], host_netns, check=False)
    await _host(["iptables", "-t", "nat", "-X", up.chain], host_netns, check=False)


async def unplug(up: HostUplink = HostUplink(), host_netns: str | None = None) -> None:
    """Remove the veth (both ends) and the NAT rules; what is already gone is fine."""
    await _host(["ip", "link", "delete", up.host_if], host_netns, check=False)
    await unnat(up, host_netns)


class NsHostUplink:
    """The toolstack's `Uplink` for ns-backend platforms on a real host (`masquerade` False:
    the host routes sys-sec's /30 itself)."""

    def __init__(self, up: HostUplink = HostUplink(), *, masquerade: bool = True) -> None:
        self.up, self.masquerade = up, masquerade

    async def plug(self, sys_sec: DomainHandle) -> None:
        await plug(netns_name(sys_sec.domid), self.up, masquerade=self.masquerade)

    async def unplug(self, sys_sec: DomainHandle) -> None:
        await unplug(self.up)


class UplinkStore(Protocol):
    async def write(self, path: str, value: str) -> None: ...


class Xl(Protocol):
    async def xl(self, *args: str, timeout: float = 120.0) -> str: ...


class XenHostUplink:
    """The toolstack's `Uplink` on Xen: a vif from dom0 to sys-sec (see the docstring).

    libxl runs a dom0 backend's hotplug script itself; ours is `/bin/true` because the
    work is done here, after the attach, where the addresses are known: dom0's end is
    addressed, the gateway written, and `hotplug-status = connected` lets netback connect.
    `masquerade` False leaves the host's NAT alone (a host with no default route: tests)."""

    def __init__(self, store: UplinkStore, xen: Xl, up: HostUplink = HostUplink(), *,
                 masquerade: bool = True) -> None:
        self.store, self.xen, self.up, self.masquerade = store, xen, up, masquerade

    async def plug(self, sys_sec: DomainHandle) -> None:
        backend = f"/local/domain/0/backend/vif/{sys_sec.domid}/0"
        vif = f"vif{sys_sec.domid}.0"
        await self.xen.xl("network-attach", sys_sec.spec.name, "backend=0", "devid=0",
                          f"ip={self.up.sys_sec_ip}", "script=/bin/true")
        await run(["ip", "addr", "add", f"{self.up.host_ip}/{self.up.prefix}", "dev", vif])
        await run(["ip", "link", "set", vif, "up"])
        if self.masquerade:
            await unnat(self.up)
            await nat(self.up, vif)
        await self.store.write(f"{backend}/hyperwall/gateway", self.up.host_ip)
        await self.store.write(f"{backend}/hotplug-status", "connected")

    async def unplug(self, sys_sec: DomainHandle) -> None:
        """libxl removes the vif with sys-sec; only the NAT rules are dom0's to remove."""
        if self.masquerade:
            await unnat(self.up)
