"""Re-adopting domains after dom0d restarts. Everything dom0 knows about a running domain
is also in xenstore, so a restarted dom0d rebuilds its view from there: running domains
are adopted untouched; a domain whose create or start was cut short (its
`/libxl/<id>/hyperwall/creating` marker is still there) is rolled back; entries of a domain
the config does not define, or the backend no longer holds, are removed; backend resources
no xenstore entry accounts for are destroyed."""
from __future__ import annotations

import enum
import logging

from dom0 import layout
from dom0.backends.base import RunState
from dom0.config import DomainSpec
from dom0.model import DomainState
from dom0.toolstack.domains import Domain, Registry, creating_marker
from dom0.toolstack.events import Events
from dom0.toolstack.teardown import remove_entries, teardown

log = logging.getLogger("hyperwall.toolstack")


class Found(enum.Enum):
    ADOPT = "adopt"              # it runs (or is paused, or stopped): the toolstack's again
    ROLL_BACK = "roll back"      # half-created: which backend steps happened is unknown
    REMOVE = "remove"            # its backend holds nothing: only its entries are left


def found(creating: bool, run: RunState) -> Found:
    """What recovery does with a domain of the config that xenstore holds."""
    if creating:
        return Found.ROLL_BACK
    if run is RunState.ABSENT:
        return Found.REMOVE
    return Found.ADOPT


def from_run_state(run: RunState) -> DomainState:
    return {RunState.CREATED: DomainState.CREATED, RunState.RUNNING: DomainState.RUNNING,
            RunState.PAUSED: DomainState.PAUSED, RunState.SHUTDOWN: DomainState.SHUTDOWN,
            RunState.CRASHED: DomainState.CRASHED}.get(run, DomainState.SHUTDOWN)


async def recover(registry: Registry, events: Events) -> None:
    """Rebuild the view of domains from xenstore and the backends after a restart."""
    store = registry.store
    known: set[tuple[str, int]] = set()
    for entry in await store.ls("/local/domain"):
        if not entry.isdigit() or entry == "0":
            continue
        domid = int(entry)
        base = layout.dom_path(domid)
        name = (await store.read(f"{base}/name") or b"").decode()
        vm = (await store.read(f"{base}/vm") or b"").decode()
        spec = registry.specs.get(name)
        if spec is None or not vm.startswith("/vm/"):
            log.warning("domain %d (%r) is not in the config dir; removing its entries",
                        domid, name)
            await remove_entries(store, domid, vm.removeprefix("/vm/") or None)
            continue
        dom = Domain(spec, domid, vm.removeprefix("/vm/"), registry.handle(domid, spec),
                     DomainState.CREATED)
        known.add((spec.backend, domid))
        creating = await store.read(creating_marker(domid).path)
        run = await registry.backend(spec).state(dom.handle)
        action = found(creating is not None, run)
        if action is Found.ROLL_BACK:
            # Cut short anywhere between its first xenstore write and its vif coming
            # up: all of it goes.
            log.warning("%s (domain %d) was half-created when dom0 stopped; rolling back",
                        name, domid)
            await teardown(registry, events, dom, emit=False)
            continue
        dom.state = from_run_state(run)
        if action is Found.REMOVE:
            await remove_entries(store, domid, dom.uuid)
            continue
        registry.domains[name] = dom
        log.info("adopted %s (domain %d, %s)", name, domid, dom.state.value)
    for backend_name, backend in registry.backends.items():
        for domid in await backend.list_domids():
            if (backend_name, domid) not in known:
                log.warning("backend %s holds domain %d that xenstore does not know; "
                            "destroying it", backend_name, domid)
                # The backend knows the orphan's real name and kind; this
                # stand-in keeps its writable layer if it does not.
                orphan = DomainSpec(name=f"orphan-{domid}", kind="app", backend=backend_name)
                await backend.destroy(registry.handle(domid, orphan))
