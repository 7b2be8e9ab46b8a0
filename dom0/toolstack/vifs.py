"""A guest's vif to sys-sec: plugged and walked to Connected on start, walked to Closed
and removed on teardown, as libxl does."""
from __future__ import annotations

import logging

from dom0 import layout
from dom0.backends.base import RunState
from dom0.model import DomainState, EventKind, InvalidState, ToolstackError
from dom0.toolstack.domains import Domain, Registry
from dom0.toolstack.events import Events
from dom0.xenstore.xenbus import XenbusState, parse_state

log = logging.getLogger("hyperwall.toolstack")

# How long each end of a vif being removed gets to walk Closing to Closed (libxl gives a
# backend 10 s) before its directories are removed anyway.
CLOSE_TIMEOUT = 5.0


def running_sys_sec(registry: Registry, dom: Domain) -> Domain:
    sys_sec = registry.sys_sec()
    if sys_sec is None or sys_sec.state is not DomainState.RUNNING:
        raise InvalidState(f"{registry.sys_sec_spec().name} is not running; "
                           f"{dom.spec.name} would have no network")
    return sys_sec


async def add_vif(registry: Registry, dom: Domain, devid: int) -> None:
    sys_sec = running_sys_sec(registry, dom)
    backend = registry.backend(dom.spec)
    await backend.add_vif(dom.handle, sys_sec.handle, devid)
    # On Xen libxl wrote the device's directories; only Hyperwall's keys are dom0's.
    nodes = layout.vif_hyperwall_nodes if backend.hypervisor_owned else layout.vif_nodes
    await registry.store.write_nodes(nodes(dom.domid, sys_sec.domid, devid, dom.spec.policy,
                                           name=dom.spec.name))


async def wait_vif_connected(registry: Registry, events: Events, dom: Domain, devid: int,
                             timeout: float) -> None:
    sys_sec = running_sys_sec(registry, dom)
    store = registry.store
    connected = str(int(XenbusState.CONNECTED)).encode()
    for path in (f"{layout.vif_frontend_path(dom.domid, devid)}/state",
                 f"{layout.vif_backend_path(sys_sec.domid, dom.domid, devid)}/state"):
        value = await store.wait_value(path, lambda v: v == connected, timeout)
        if value != connected:
            raise ToolstackError(
                f"{dom.spec.name}: vif {devid} did not reach Connected in "
                f"{timeout:.0f}s ({path} is {_state_name(value)}); see "
                f"the console logs of {dom.spec.name} and {sys_sec.spec.name}")
    if registry.backend(dom.spec).hypervisor_owned:
        # netfront says Connected before the guest's agent has addressed the link.
        path = f"{layout.dom_path(dom.domid)}/data/hyperwall/vif/{devid}"
        value = await store.wait_value(path, lambda v: (v or b"").startswith(b"up"), timeout)
        if not (value or b"").startswith(b"up"):
            raise ToolstackError(f"{dom.spec.name}: its agent did not configure vif "
                                 f"{devid} in {timeout:.0f}s ({path} is "
                                 f"{value!r}); see its console log")
    events.emit(EventKind.VIF_CONNECTED, dom, f"vif{dom.domid}.{devid}")


async def close_vif(registry: Registry, dom: Domain, sys_sec: Domain, devid: int) -> None:
    """Remove a vif as libxl does: `online` 0 asks the backend to close; it goes
    Closing, the frontend follows to Closing, the backend to Closed, the frontend to
    Closed; then the directories go, the frontend's first. A frontend that cannot
    answer (its domain stopped, or it does not within CLOSE_TIMEOUT) loses its
    directory anyway, which closes the backend as a vanished frontend does."""
    store = registry.store
    fe = layout.vif_frontend_path(dom.domid, devid)
    be = layout.vif_backend_path(sys_sec.domid, dom.domid, devid)
    closed = str(int(XenbusState.CLOSED)).encode()

    def done(value: bytes | None) -> bool:
        return value in (closed, None)
    if await store.write_if_exists(be, f"{be}/online", "0") and \
            await registry.backend(dom.spec).state(dom.handle) is RunState.RUNNING:
        for path in (f"{be}/state", f"{fe}/state"):
            if not done(await store.wait_value(path, done, CLOSE_TIMEOUT)):
                log.warning("%s: vif %d: %s did not reach Closed in %.0fs; removing it",
                            dom.spec.name, devid, path, CLOSE_TIMEOUT)
                break
    await store.rm(fe)
    if not done(await store.wait_value(f"{be}/state", done, CLOSE_TIMEOUT)):
        log.warning("%s: vif %d: sys-sec's end did not reach Closed in %.0fs; removing it",
                    dom.spec.name, devid, CLOSE_TIMEOUT)
    await store.rm(be)


def _state_name(value: bytes | None) -> str:
    try:
        return parse_state(value).name
    except ValueError:
        return repr(value)
