"""`hyperwall-dom0d`: the control domain's daemon.

It holds the privileged xenstore connection (starting `hyperwall-xenstored` itself when
none answers), rebuilds its view of running domains from xenstore, supervises them, and
serves the control API on a Unix socket. Domains outlive it: a SIGTERM or a crash of
dom0d stops nothing, and the next dom0d adopts what runs (see `Toolstack.recover`).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from dom0.api import DEFAULT_SOCKET
from dom0.api.server import serve
from dom0.backends.base import Backend
from dom0.backends.ns import NsBackend
from dom0.backends.xen import GuestImages, XenBackend
from dom0.config import DEFAULT_CONFIG_DIR, ConfigError, load_config_dir
from dom0.model import ToolstackError
from dom0.toolstack import CONNECT_TIMEOUT, Scanners, Toolstack, Uplink
from dom0.toolstack.atrest import SCHEDULE_TICK
from dom0.uplink import NsHostUplink, XenHostUplink
from dom0.xenstore.client import AsyncXenStore, NoXenStore, XsError, rundir_socket
from domains.logsetup import setup_logging

log = logging.getLogger("hyperwall.dom0d")

XENSTORED_START_TIMEOUT = 10.0
# sys-sec is a driver domain: it owns every guest's vif backend directory (~16 nodes) and
# watches each guest's frontend state, so oxenstored's defaults (1000 nodes, 100 watches
# per domain) would cap a platform at about 60 guests. These allow ~250; a guest flooding
# xenstore is still bounded by them.
XENSTORED_QUOTAS = ["--quota-nodes", "4096", "--quota-watches", "512"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hyperwall-dom0d", description=__doc__.splitlines()[0])
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR,
                   help="one TOML file per domain (default: %(default)s)")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/hyperwall"),
                   help="domains' disks, consoles and the xenstore journal")
    p.add_argument("--rundir", type=Path, default=Path("/run/hyperwall"),
                   help="runtime sockets; xenstore's are under RUNDIR/xenstored")
    p.add_argument("--socket", type=Path, default=DEFAULT_SOCKET,
                   help="the control API's socket (default: %(default)s)")
    p.add_argument("--autostart", action="store_true",
                   help="start the domains whose definition says `autostart = true`")
    p.add_argument("--uplink", choices=("host", "routed", "none"), default="host",
                   help="host: sys-sec reaches the host's default route through NAT; routed: "
                   "the same link without NAT (the host routes sys-sec's network); none: "
                   "sys-sec gets no uplink from dom0d (a simulated network plugs one in)")
    p.add_argument("--hypervisor", choices=("none", "xen"), default="none",
                   help="xen: run domains as Xen guests (the `xen` backend) on the system's "
                   "xenstored; none: the embedded platform with its own xenstored")
    p.add_argument("--xen-images", type=Path, metavar="DIR",
                   help="what Xen guests boot (`hyperwall-build xen-guests -o DIR`; default: "
                   "STATE/xen/images)")
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT, metavar="S",
                   help="how long a new domain's vif may take to connect (default: %(default)s)")
    p.add_argument("--first-domid", type=int, default=1, metavar="N",
                   help="allocate domids from N up (several platforms on one host: tests)")
    p.add_argument("--clamd-socket", default=Scanners.clamd_socket, metavar="PATH",
                   help="clamd's socket as sys-sec sees it, for scans at rest ('' for none; "
                   "default: %(default)s)")
    p.add_argument("--yara-dir", default=None, metavar="PATH",
                   help="a folder of YARA rules as sys-sec sees it, for scans at rest")
    p.add_argument("--scan-tick", type=float, default=SCHEDULE_TICK, metavar="S",
                   help="how often to look for scheduled scans that are due "
                   "(default: %(default)s)")
    return p.parse_args(argv)


async def ensure_xenstored(rundir: Path, state_dir: Path) -> tuple[AsyncXenStore, Path]:
    """The privileged connection, to a running daemon in `rundir` or to one started now.

    The daemon is started in its own session so it outlives dom0d: domains keep their
    xenstore while dom0d restarts.
    """
    where = rundir_socket(rundir)
    try:
        return await AsyncXenStore.connect(where), rundir
    except (NoXenStore, XsError, OSError):
        pass
    rundir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "xenstored.log"
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dom0.xenstored.daemon", "--rundir", str(rundir),
             "--state-dir", str(state_dir / "xenstore"), *XENSTORED_QUOTAS],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
    # Whoever tears the platform down for good (tests, `make demo`) stops it by this file.
    (rundir / "xenstored.pid").write_text(f"{proc.pid}\n")
    log.info("started hyperwall-xenstored (pid %d, log %s)", proc.pid, log_path)
    deadline = asyncio.get_running_loop().time() + XENSTORED_START_TIMEOUT
    while True:
        try:
            return await AsyncXenStore.connect(where), rundir
        except (NoXenStore, XsError, OSError) as e:
            if proc.poll() is not None:
                raise SystemExit(f"hyperwall-xenstored exited with {proc.returncode}; "
                                 f"see {log_path}") from None
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"hyperwall-xenstored did not answer on {where[1]} in "
                                 f"{XENSTORED_START_TIMEOUT:.0f}s: {e}") from None
            await asyncio.sleep(0.02)


async def run(args: argparse.Namespace) -> int:
    try:
        specs = load_config_dir(args.config_dir)
    except ConfigError as e:
        log.error("%s", e)
        return 1
    masquerade = args.uplink == "host"
    uplink: Uplink | None
    if args.hypervisor == "xen":
        # The system's xenstored (found as any Xen tool finds it); libxl owns the layout.
        store, xs_rundir = await AsyncXenStore.connect(), Path("/var/run/xenstored")
        images = GuestImages.in_folder(args.xen_images or args.state_dir / "xen" / "images")
        xen = XenBackend(args.state_dir / "xen", images, store)
        backends: dict[str, Backend] = {"xen": xen}
        uplink = XenHostUplink(store, xen, masquerade=masquerade)
    else:
        store, xs_rundir = await ensure_xenstored(args.rundir / "xenstored", args.state_dir)
        await store.write("/local/domain/0/name", "Domain-0")
        backends = {"ns": NsBackend(args.state_dir / "ns",
                                    sys_sec_dir=args.state_dir / "sys-sec")}
        uplink = NsHostUplink(masquerade=masquerade)
    toolstack = Toolstack(specs, store, backends, xs_rundir, first_domid=args.first_domid,
                          uplink=uplink if args.uplink != "none" else None,
                          connect_timeout=args.connect_timeout,
                          quarantine_dir=args.state_dir / "quarantine",
                          scanners=Scanners(clamd_socket=args.clamd_socket or None,
                                            yara_dir=args.yara_dir))
    await toolstack.recover()
    toolstack.supervise()
    toolstack.schedule_scans(args.scan_tick)
    toolstack.apply_in_flight(args.state_dir / "sys-sec" / "log")
    api = await serve(toolstack, args.socket, sys_sec_dir=args.state_dir / "sys-sec")
    if args.autostart:
        try:
            await toolstack.autostart()
        except ToolstackError as e:   # dom0d still serves, so the owner can see and act
            log.error("autostart: %s", e)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("dom0d ready: %d domains defined, %d running", len(specs), len(toolstack.domains))
    await stop.wait()
    log.info("stopping; domains keep running")
    await api.stop()
    await toolstack.close()
    with contextlib.suppress(Exception):
        await store.close()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging("dom0d")
    if os.geteuid() != 0:
        sys.exit("hyperwall-dom0d needs root (namespaces, cgroups, mounts)")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
