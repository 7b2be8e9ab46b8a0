"""The xenstore layout of a domain and of its vif devices, as libxl writes them.

Pure data: each function returns the nodes to create, in order, as `Node(path, value,
perms)`; the toolstack writes them in one transaction. Permissions use Xen's text form
(`n0` = owner dom0, nobody else; `r5` = domain 5 may read), entry 0 naming the owner.

Following libxl (`libxl__domain_make`, `libxl__device_generic_add`):
- `/local/domain/<id>` and its `cpu`, `memory`, `device`, `control` are dom0's, readable by
  the guest; `control/shutdown`, `control/feature-*`, `data`, `drivers`, `feature`, `attr`,
  `error` belong to the guest.
- `/vm/<uuid>` is dom0's and readable by the guest, as libxl does; XENSTORE.md calls it
  hidden, but libxl gives it the read-only perms and the `xen` backend must match libxl.
- A device's frontend directory belongs to the guest with read for the backend domain, its
  backend directory to the backend domain with read for the guest.
- `/libxl/<id>` is the toolstack's private record (no access for guests).
Hyperwall's own keys live in a `hyperwall/` directory inside these.
"""
from __future__ import annotations

from dataclasses import dataclass

from dom0.config import DomainSpec
from dom0.xenstore.paths import Node

XENBUS_INITIALISING = 1


def dom_path(domid: int) -> str:
    return f"/local/domain/{domid}"


def vm_path(uuid: str) -> str:
    return f"/vm/{uuid}"


def libxl_path(domid: int) -> str:
    return f"/libxl/{domid}"


def domain_nodes(domid: int, uuid: str, spec: DomainSpec) -> list[Node]:
    """Everything `libxl__domain_make` and the build step write for a new domain."""
    d = dom_path(domid)
    ro = ("n0", f"r{domid}")       # dom0 owns, the guest reads
    rw = (f"n{domid}",)            # the guest owns
    no = ("n0",)
    nodes = [
        Node(d, None, ro),
        Node(vm_path(uuid), None, ro),
        Node(libxl_path(domid), None, no),
        Node(f"{libxl_path(domid)}/device", None, no),
        Node(f"{libxl_path(domid)}/type", "pv"),
        Node(f"{d}/vm", vm_path(uuid)),
        Node(f"{d}/name", spec.name),
        Node(f"{d}/domid", str(domid)),
        Node(f"{d}/cpu", None, ro),
        Node(f"{d}/memory", None, ro),
        Node(f"{d}/memory/static-max", str(spec.memory_mb * 1024)),
        Node(f"{d}/memory/target", str(spec.memory_mb * 1024)),
        Node(f"{d}/device", None, ro),
        Node(f"{d}/control", None, ro),
    ]
    nodes += [Node(f"{d}/cpu/{n}/availability", "online") for n in range(spec.vcpus)]
    for sub in ("control/shutdown", "control/feature-poweroff", "control/feature-reboot",
                "control/feature-suspend", "control/sysrq", "device/suspend/event-channel",
                "data", "drivers", "feature", "attr", "error"):
        nodes.append(Node(f"{d}/{sub}", "" if sub.startswith("control/") else None, rw))
    nodes += [
        Node(f"{d}/control/platform-feature-multiprocessor-suspend", "1"),
        Node(f"{d}/control/platform-feature-xs_reset_watches", "1"),
        Node(f"{vm_path(uuid)}/uuid", uuid),
        Node(f"{vm_path(uuid)}/name", spec.name),
        *hyperwall_nodes(domid, spec),
    ]
    return nodes


def hyperwall_nodes(domid: int, spec: DomainSpec) -> list[Node]:
    """What dom0 tells the domain about itself, read-only for it (on Xen, libxl writes the
    rest of the layout and dom0 adds only these)."""
    d = dom_path(domid)
    return [Node(f"{d}/hyperwall", None, ("n0", f"r{domid}")),
            Node(f"{d}/hyperwall/kind", spec.kind),
            Node(f"{d}/hyperwall/policy", spec.policy),
            Node(f"{libxl_path(domid)}/hyperwall/backend", spec.backend)]


@dataclass(frozen=True)
class VifAddressing:
    """Routed /32 addressing: the guest's address and sys-sec's address on that vif."""

    ip: str
    gateway: str
    mac: str


def vif_addressing(domid: int, devid: int) -> VifAddressing:
    # 10.137.0.0/16 as Qubes does: one /32 per guest, the gateway the same on every vif.
    if not 0 < domid < 65025:
        raise ValueError(f"domid {domid} does not fit the 10.137.0.0/16 guest range")
    hi, lo = divmod(domid, 255)
    mac = f"00:16:3e:{(domid >> 8) & 0xff:02x}:{domid & 0xff:02x}:{devid & 0xff:02x}"
    return VifAddressing(ip=f"10.137.{hi}.{lo + 1}", gateway="10.137.255.254", mac=mac)


def vif_frontend_path(domid: int, devid: int) -> str:
    return f"{dom_path(domid)}/device/vif/{devid}"


def vif_backend_path(backend_domid: int, domid: int, devid: int) -> str:
    return f"{dom_path(backend_domid)}/backend/vif/{domid}/{devid}"


def vif_nodes(domid: int, backend_domid: int, devid: int, policy: str, *,
              name: str) -> list[Node]:
    """The frontend and backend directories of a vif, as `libxl__device_nic_add` writes,
    with Hyperwall's keys (`vif_hyperwall_nodes`) in the backend's."""
    return [*vif_libxl_nodes(domid, backend_domid, devid),
            *vif_hyperwall_nodes(domid, backend_domid, devid, policy, name=name)]


def vif_libxl_nodes(domid: int, backend_domid: int, devid: int) -> list[Node]:
    """What libxl itself writes for a vif (`xl network-attach` on Xen writes exactly these)."""
    fe, be = vif_frontend_path(domid, devid), vif_backend_path(backend_domid, domid, devid)
    fe_perms = (f"n{domid}", f"r{backend_domid}")
    be_perms = (f"n{backend_domid}", f"r{domid}")
    addr = vif_addressing(domid, devid)
    state = str(XENBUS_INITIALISING)
    return [
        Node(fe, None, fe_perms),
        Node(f"{fe}/backend", be),
        Node(f"{fe}/backend-id", str(backend_domid)),
        Node(f"{fe}/state", state),
        Node(f"{fe}/handle", str(devid)),
        Node(f"{fe}/mac", addr.mac),
        Node(be, None, be_perms),
        Node(f"{be}/frontend", fe),
        Node(f"{be}/frontend-id", str(domid)),
        Node(f"{be}/online", "1"),
        Node(f"{be}/state", state),
        Node(f"{be}/script", "/etc/xen/scripts/vif-route"),   # libxl makes it absolute
        Node(f"{be}/mac", addr.mac),
        Node(f"{be}/ip", addr.ip),
        Node(f"{be}/handle", str(devid)),
        Node(f"{be}/type", "vif"),
        Node(f"{libxl_path(domid)}/device/vif/{devid}/frontend", fe),
        Node(f"{libxl_path(domid)}/device/vif/{devid}/backend", be),
    ]


def vif_hyperwall_nodes(domid: int, backend_domid: int, devid: int, policy: str, *,
                        name: str) -> list[Node]:
    be = vif_backend_path(backend_domid, domid, devid)
    return [
        # Routed addressing and the owner's policy for this guest, applied by sys-sec.
        Node(f"{be}/hyperwall/gateway", vif_addressing(domid, devid).gateway),
        Node(f"{be}/hyperwall/policy", policy),
        # The guest's name for sys-sec's logs and reports: it cannot read the guest's tree.
        Node(f"{be}/hyperwall/name", name),
    ]
