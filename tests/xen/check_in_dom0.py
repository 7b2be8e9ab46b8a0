"""Run inside Xen's dom0 (by tests/xen/harness.py): Hyperwall's dom0 code against Xen itself.
Prints one `HWCHECK <name> PASS|FAIL <detail>` line per check; the host reads them from the
serial console.

`smoke` starts sys-sec (a real PV guest booting builder's image, its agent on
/dev/xen/xenbus) through the toolstack and shuts it down. `full` checks the client layer
against the real oxenstored (its socket and the xenbus device), then runs `hyperwall-dom0d
--hypervisor xen` on the standard domains and drives it with the `hyperwall` CLI: they
start as Xen guests, libxl's tree agrees with dom0/layout.py, every vif is Connected with
netfront in the guest and netback in sys-sec, guests reach a server behind sys-sec and
nothing else, `hyperwall list` agrees with `xl list`, and `hyperwall down` leaves nothing.

Usage: check_in_dom0.py smoke|full IMAGES_DIR
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TextIO

from dom0.backends.base import RunState
from dom0.backends.xen import GuestImages, XenBackend, parse_xl_list
from dom0.config import STANDARD_DIR, load_config_dir
from dom0.layout import domain_nodes, hyperwall_nodes, vif_addressing, vif_libxl_nodes
from dom0.model import DomainState
from dom0.toolstack import Toolstack
from dom0.xenstore.client import AsyncXenStore, Perm, XenStore
from tests.xen.libxl_layout import Tree, differences

DOMAINS = Path(__file__).resolve().parent / "domains"
WORK = Path("/tmp/hyperwall-xen")
SERVER, LAN_HOST, PAGE = "203.0.113.10", "192.168.1.10", b"behind sys-sec\n"
TIMEOUT = 180.0


FAILED: list[str] = []


def report(name: str, ok: bool, detail: str = "") -> None:
    print(f"HWCHECK {name} {'PASS' if ok else 'FAIL'} {detail}".rstrip(), flush=True)
    if not ok:
        FAILED.append(name)


def read_tree(xs: XenStore, root: str) -> Tree:
    """A subtree as `xenstore-ls -fp` shows it, read through the client layer."""
    tree: Tree = {root: (xs.read(root).decode(), tuple(map(str, xs.get_perms(root))))}
    for child in xs.ls(root):
        tree |= read_tree(xs, f"{root}/{child}")
    return tree


def xl_list() -> dict[str, tuple[int, RunState, int]]:
    """`xl list` read on its own, not through the backend under test."""
    out = subprocess.run(["xl", "list"], capture_output=True, text=True, check=True).stdout
    return {d.name: (d.domid, d.state, d.memory_mb) for d in parse_xl_list(out)}


def _relay(stream: TextIO, prefix: str) -> None:
    for line in stream:
        print(prefix + line.rstrip("\n"), flush=True)


def consoles(failed: bool) -> None:
    """Every guest's console, for whoever reads a failure; after a pass, what init said and
    every warning and error, or the whole console where init had to start the agent again
    (the run passed, and that is news)."""
    for log in sorted(Path("/var/log/xen/console").glob("guest-*.log")):
        print(f"== {log.name}", flush=True)
        text = log.read_text(errors="replace")
        if failed or re.search(r"^init: agent (exited with [1-9]|killed)", text, re.M):
            print(text[-3000:], flush=True)
        else:
            print("\n".join(line for line in text.splitlines()
                            if line.startswith("init:") or " WARNING " in line
                            or " ERROR " in line), flush=True)


async def client_layer(name: str, where: tuple[str, str] | None) -> None:
    """Node operations, permissions, a transaction and a watch, against the real oxenstored:
    through its socket (`where` None: found as on any Xen host) or dom0's xenbus device."""
    with XenStore(where) as xs:
        xs.write(f"/hwcheck/{name}/a", "1")
        xs.set_perms(f"/hwcheck/{name}/a", ["n0", "r5"])
        ok = xs.read(f"/hwcheck/{name}/a") == b"1" and xs.get_perms(f"/hwcheck/{name}/a") == [
            Perm(0, "n"), Perm(5, "r")] and "a" in xs.ls(f"/hwcheck/{name}")
        xs.transaction(lambda tx: tx.write(f"/hwcheck/{name}/b", "2"))
        ok = ok and xs.read(f"/hwcheck/{name}/b") == b"2"
        xs.rm("/hwcheck")
        report(name, ok and not xs.exists("/hwcheck"), f"where={xs.where}")
    store = await AsyncXenStore.connect(where)
    events = store.watch("/hwcheck")
    try:
        initial = await asyncio.wait_for(anext(events), 10)   # Xen fires a new watch once
        await store.write("/hwcheck/w", "1")
        seen = await asyncio.wait_for(_until(events, "/hwcheck/w"), 10)
        report(f"{name}-watch", initial == "/hwcheck" and seen)
    except Exception as e:
        report(f"{name}-watch", False, f"{type(e).__name__}: {e}")
    finally:
        await events.aclose()
        await store.rm("/hwcheck")
        await store.close()


async def _until(events: AsyncIterator[str], path: str) -> bool:
    async for event_path in events:
        if event_path == path:
            return True
    return False


async def smoke(images: GuestImages) -> None:
    """sys-sec, defined by TOML, through the toolstack: created paused, started (its agent
    reports over the real xenbus), shut down politely, leaving nothing behind."""
    store = await AsyncXenStore.connect()
    spec = load_config_dir(DOMAINS)["sys-sec"]
    ts = Toolstack({"sys-sec": spec}, store, {"xen": XenBackend(WORK / "xen", images, store)},
                   Path("/var/run/xenstored"), connect_timeout=TIMEOUT)
    started = time.monotonic()
    try:
        info = await ts.create("sys-sec")
        report("xl-create-paused", xl_list()["sys-sec"][1] is RunState.PAUSED
               and info.state is DomainState.CREATED, f"domid={info.domid}")
        info = await ts.start("sys-sec")
        agent = await store.read(f"/local/domain/{info.domid}/data/hyperwall/agent")
        report("started", xl_list()["sys-sec"][1] is RunState.RUNNING and agent is not None,
               f"agent={agent!r} after {time.monotonic() - started:.1f}s")
        await ts.shutdown("sys-sec", timeout=60)
        left = await store.ls(f"/local/domain/{info.domid}")
        report("shutdown", "sys-sec" not in xl_list() and not left and not ts.domains,
               f"left={left}")
    finally:
        await store.close()


# -- the full run: dom0d and the CLI on the standard domains --------------------------------

def hyperwall(*argv: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-S", "-m", "dom0.cli", "--json", *argv],
                          capture_output=True, text=True, timeout=timeout)


def in_guest(name: str, *argv: str, timeout: float = 20) -> tuple[int, str]:
    done = hyperwall("exec", name, "--timeout", str(timeout), "--", *argv,
                     timeout=timeout + 30)
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        return -1, f"hyperwall exec said: {done.stdout} {done.stderr}"
    if "exit_code" not in reply:   # hyperwall's error object: say it, not a KeyError
        return -1, f"hyperwall exec said: {reply}"
    return reply["exit_code"], reply["stdout"] + reply["stderr"]


def standard_on_xen(folder: Path) -> Path:
    """The standard domains, as their TOML says, with `backend = "xen"`."""
    folder.mkdir(parents=True, exist_ok=True)
    for toml in STANDARD_DIR.glob("*.toml"):
        (folder / toml.name).write_text(toml.read_text().replace('backend = "ns"',
                                                                 'backend = "xen"'))
    return folder


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


def serve_behind_sys_sec() -> http.server.ThreadingHTTPServer:
    """A web server on dom0's side of sys-sec's uplink: a public address guests may reach
    and a LAN one only `lan` guests may."""
    for addr in (SERVER, LAN_HOST):
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 80), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def full(images_dir: Path) -> None:
    config = standard_on_xen(WORK / "domains")
    specs = load_config_dir(config)
    os.environ["HYPERWALL_SOCKET"] = str(WORK / "control.sock")
    server = serve_behind_sys_sec()
    dom0d = subprocess.Popen(
        [sys.executable, "-S", "-m", "dom0.dom0d", "--hypervisor", "xen", "--config-dir",
         str(config), "--state-dir", str(WORK / "state"), "--socket",
         os.environ["HYPERWALL_SOCKET"], "--xen-images", str(images_dir), "--uplink", "routed",
         "--connect-timeout", str(TIMEOUT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace")
    # dom0d's log goes to the console as it comes: a slow or stuck run shows where it is.
    relay = threading.Thread(target=_relay, args=(dom0d.stdout, "dom0d| "), daemon=True)
    relay.start()
    try:
        checks: list[tuple[str, Callable[[], None]]] = [
            ("standard-domains-up", lambda: up(specs)),
            ("hyperwall-list-agrees-with-xl-list", list_agrees),
            ("libxl-layout", lambda: layout(specs)),
            ("vifs-connected", vifs_connected),
            ("guests-reach-the-server-and-nothing-else", reach),
            ("pause-unpause", pause_unpause),
            ("hyperwall-down", down),
        ]
        for name, check in checks:
            try:
                check()
            except Exception:
                report(name, False, traceback.format_exc().replace("\n", " | ")[-700:])
    finally:
        dom0d.terminate()
        dom0d.wait(10)
        relay.join(5)
        server.shutdown()


def up(specs: dict) -> None:  # type: ignore[type-arg]
    started = time.monotonic()
    deadline = started + 60
    while not Path(os.environ["HYPERWALL_SOCKET"]).exists() and time.monotonic() < deadline:
        time.sleep(0.2)    # dom0d's socket appears once it serves; nothing to watch before
    done = hyperwall("up", timeout=600)
    xl = xl_list()
    running = {n for n, (_, state, _) in xl.items() if state is RunState.RUNNING}
    report("standard-domains-up", done.returncode == 0 and set(specs) <= running,
           f"in {time.monotonic() - started:.0f}s; xl list: {sorted(running)}; "
           f"{(done.stdout + done.stderr).strip()[-400:]}")


def list_agrees() -> None:
    ours = {d["name"]: (d["domid"], d["state"], d["memory_mb"])
            for d in json.loads(hyperwall("list").stdout)}
    xl = {n: (domid, state.value, mem) for n, (domid, state, mem) in xl_list().items()
          if n != "Domain-0"}
    report("hyperwall-list-agrees-with-xl-list", ours == xl, f"hyperwall={ours} xl={xl}")


def layout(specs: dict) -> None:  # type: ignore[type-arg]
    """family's tree as libxl wrote it against dom0/layout.py: the domain, its vif's front
    and back ends (libxl writes those on `xl network-attach`). Once the domain runs, the
    values of what the guest owns (its kernel announces control/feature-*) and of the
    drivers' `state` are theirs, so only their permissions are compared."""
    xl = xl_list()
    domid, sys_sec = xl["family"][0], xl["sys-sec"][0]
    with XenStore() as xs:
        uuid = xs.read(f"/local/domain/{domid}/vm").decode().removeprefix("/vm/")
        tree = read_tree(xs, f"/local/domain/{domid}") | read_tree(xs, f"/vm/{uuid}") \
            | read_tree(xs, f"/libxl/{domid}") \
            | read_tree(xs, f"/local/domain/{sys_sec}/backend/vif/{domid}")
    spec = specs["family"]
    ours = set(hyperwall_nodes(domid, spec))
    nodes = [n for n in domain_nodes(domid, uuid, spec) if n not in ours] \
        + vif_libxl_nodes(domid, sys_sec, 0)
    for path, (value, perms) in list(tree.items()):
        if path.endswith("/state") or perms[0] == f"n{domid}":
            expected = next((n.value for n in nodes if n.path == path), value)
            tree[path] = (expected or "", perms)
    diff = differences(nodes, tree)
    report("libxl-layout", not diff, f"nodes={len(tree)} " + "; ".join(diff))


def vifs_connected() -> None:
    xl = xl_list()
    sys_sec = xl["sys-sec"][0]
    states = {}
    with XenStore() as xs:
        for name in ("work", "family", "untrusted"):
            fe = f"/local/domain/{xl[name][0]}/device/vif/0"
            be = f"/local/domain/{sys_sec}/backend/vif/{xl[name][0]}/0"
            states[name] = (xs.read(f"{fe}/state"), xs.read(f"{be}/state"),
                            xs.read(f"{be}/hotplug-status"))
        uplink = f"/local/domain/0/backend/vif/{sys_sec}/0/state"
        states["uplink"] = (xs.read(f"/local/domain/{sys_sec}/device/vif/0/state"),
                            xs.read(uplink), b"connected")
    code, links = in_guest("sys-sec", "ip", "-o", "link")
    made = {f"vif{xl[n][0]}.0" for n in ("work", "family", "untrusted")} | {"uplink0"}
    present = {word.rstrip(":").split("@")[0] for word in links.split()}
    report("vifs-connected", all(s == (b"4", b"4", b"connected") for s in states.values())
           and made <= present, f"states={states} sys-sec links={sorted(present & made)} "
           f"of {sorted(made)}; `ip -o link` said: {links[-300:]!r}")


# busybox 1.35's `wget -T` dies of SIGSEGV (Debian's busybox-static, any host): `timeout`
# bounds the attempt instead.
GET = "timeout 10 wget -q -O - {}"


def probe(guest: str, probes: dict[str, str]) -> dict[str, tuple[int, str]]:
    """Each probe's exit status and output, all run side by side in one `hyperwall exec`
    (one Python start in dom0 per guest rather than per probe: seconds each under
    emulation)."""
    script = "".join(f'(out=$({command} 2>/dev/null); echo "PROBE {name} $?" $out) &\n'
                     for name, command in probes.items()) + "wait\n"
    code, out = in_guest(guest, "sh", "-c", script, timeout=60)
    results = {}
    for line in out.splitlines():     # the shell may say more (a probe timed out: Terminated)
        if line.startswith("PROBE "):
            _, name, rc, *words = line.split()
            results[name] = (int(rc), " ".join(words))
    return {name: results.get(name, (-1, f"no result (exec rc={code}): {out[-200:]}"))
            for name in probes}


def reach() -> None:
    xl = xl_list()
    family_ip = vif_addressing(xl["family"][0], 0).ip
    server = GET.format(f"http://{SERVER}/")
    plan = {"untrusted": {"server": server, "lan": GET.format(f"http://{LAN_HOST}/"),
                          "dom0": GET.format("http://100.127.255.1/"),
                          "family": f"ping -c 1 -W 3 {family_ip}"},
            "family": {"server": server},
            "work": {"server": server}}     # vpn-only with no tunnel: the kill switch
    with concurrent.futures.ThreadPoolExecutor(len(plan)) as pool:
        done = dict(zip(plan, pool.map(probe, plan, plan.values()), strict=True))
    outcomes = {f"{guest}->{name}": result for guest, results in done.items()
                for name, result in results.items()}
    allowed = {"untrusted->server", "family->server"}
    ok = all((code == 0 and out == PAGE.decode().strip()) if name in allowed else code != 0
             for name, (code, out) in outcomes.items())
    report("guests-reach-the-server-and-nothing-else", ok,
           "; ".join(f"{n}: rc={c} {o[:60]!r}" for n, (c, o) in outcomes.items()))


def pause_unpause() -> None:
    paused = hyperwall("pause", "untrusted").returncode == 0 and \
        xl_list()["untrusted"][1] is RunState.PAUSED
    again = hyperwall("unpause", "untrusted").returncode == 0 and \
        xl_list()["untrusted"][1] is RunState.RUNNING
    report("pause-unpause", paused and again, f"paused={paused} running again={again}")


def down() -> None:
    ids = [domid for n, (domid, _, _) in xl_list().items() if n != "Domain-0"]
    done = hyperwall("down", timeout=300)
    with XenStore() as xs:
        left = [d for d in ids if xs.exists(f"/local/domain/{d}")]
        backends = xs.ls("/local/domain/0/backend/vif") \
            if xs.exists("/local/domain/0/backend/vif") else []
    report("hyperwall-down", done.returncode == 0 and list(xl_list()) == ["Domain-0"]
           and not left and not backends, f"xl list={list(xl_list())} left={left} "
           f"dom0 backends={backends} {done.stderr.strip()[-200:]}")


def main(which: str, images_dir: Path) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    images = GuestImages.in_folder(images_dir)
    checks: list[tuple[str, Callable[[], Awaitable[None] | None]]] = [
        ("smoke", lambda: asyncio.run(smoke(images)))]
    if which == "full":
        checks = [("client-layer-vs-oxenstored",
                   lambda: asyncio.run(client_layer("client-layer-vs-oxenstored", None))),
                  ("client-layer-via-xenbus",
                   lambda: asyncio.run(client_layer("client-layer-via-xenbus",
                                                    ("xenbus", "/dev/xen/xenbus")))),
                  ("full", lambda: full(images_dir))]
    for name, check in checks:
        try:
            check()
        except Exception:
            report(name, False, traceback.format_exc().replace("\n", " | ")[-700:])
    consoles(failed=bool(FAILED))
    with contextlib.suppress(OSError):
        shutil.rmtree(WORK)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
