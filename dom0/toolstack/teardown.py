"""Removing every trace of a domain: its vif, sys-sec's uplink, the backend's resources,
its xenstore entries and its domid. Each step runs even when one before it failed."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from dom0 import layout
from dom0.model import DomainState, EventKind
from dom0.toolstack.domains import Domain, Registry, Store
from dom0.toolstack.events import Events
from dom0.toolstack.vifs import close_vif

log = logging.getLogger("hyperwall.toolstack")


async def teardown(registry: Registry, events: Events, dom: Domain, emit: bool = True) -> None:
    """Remove every trace of a domain: backend resources, vifs, xenstore, its domid."""
    dom.state = DomainState.DYING
    backend = registry.backend(dom.spec)
    store = registry.store
    sys_sec = registry.sys_sec()
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    leftovers: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    if sys_sec is not None and sys_sec is not dom:
        if not backend.hypervisor_owned:
            steps.append(("vif close", lambda: close_vif(registry, dom, sys_sec, 0)))
        steps.append(("vif", lambda: backend.remove_vif(dom.handle, sys_sec.handle, 0)))
        # On Xen libxl takes the devices away with the domain (sys-sec's agent removes
        # its backend directory, as a driver domain does): only what is left is ours.
        (leftovers if backend.hypervisor_owned else steps).append(
            ("backend entries", lambda: store.rm(
                f"{layout.dom_path(sys_sec.domid)}/backend/vif/{dom.domid}")))
    if dom.spec.is_sys_sec and registry.uplink is not None:
        uplink = registry.uplink
        steps.append(("uplink", lambda: uplink.unplug(dom.handle)))
    steps.append(("backend", lambda: backend.destroy(dom.handle)))
    steps += leftovers
    steps.append(("release", lambda: store.release(dom.domid)))
    steps.append(("xenstore", lambda: remove_entries(store, dom.domid, dom.uuid)))
    for what, step in steps:
        try:
            await step()
        except Exception as e:  # keep going: leaving the rest behind would leak more
            log.warning("tearing down %s: %s: %s", dom.spec.name, what, e)
    if registry.domains.get(dom.spec.name) is dom:
        del registry.domains[dom.spec.name]
    if emit:
        events.emit(EventKind.DESTROYED, dom)


async def remove_entries(store: Store, domid: int, uuid: str | None) -> None:
    for path in (layout.dom_path(domid), layout.libxl_path(domid),
                 *([layout.vm_path(uuid)] if uuid else [])):
        await store.rm(path)
