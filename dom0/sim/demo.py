"""`make demo`: brings up the embedded platform in a scratch folder, plugs the simulated
internet into sys-sec, and walks through the three stories with checks shown as they run;
then tears it all down. Exits 1 if any check failed.

Each part is one function taking the running platform; they run in order.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable

from dom0.layout import vif_addressing
from dom0.sim.embedded import Platform
from dom0.sim.guest_scripts import DIG, EICAR_SID, FETCH, RESOLVE, SYS_SEC_FILES
from dom0.sim.net import INTRANET, LAN_HOST, PUBLIC_RESOLVER, ZONE, SimNet

# `ip -o link` lines: (ifindex, name), the name with @ifN where the peer is elsewhere.
LINK = re.compile(r"^(\d+): ([^:]+):", re.MULTILINE)
GREEN, RED, BOLD, DIM, RESET = ("\033[32m", "\033[31m", "\033[1m", "\033[2m", "\033[0m") \
    if sys.stdout.isatty() else ("", "", "", "", "")


class Show:
    """Prints steps, command output and checks for a person following along."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def step(self, title: str) -> None:
        print(f"\n{BOLD}== {title}{RESET}", flush=True)

    def output(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            print(f"   {DIM}{line}{RESET}")

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        mark = f"{GREEN}✓{RESET}" if ok else f"{RED}✗{RESET}"
        print(f"   {mark} {what}" + (f" {DIM}({detail}){RESET}" if detail else ""), flush=True)
        if not ok:
            self.failed.append(what)


Part = Callable[[Platform, Show], Awaitable[None]]


async def domains_are_isolated(p: Platform, show: Show) -> None:
    show.step("hyperwall up: sys-sec first, then every domain in the config dir")
    code, out, err = await p.cli("up")
    show.output(out + err)
    show.check(code == 0, "the platform is up")
    code, out, _ = await p.cli("--json", "list")
    listed = json.loads(out) if code == 0 else []
    # Only a running domain has a domid (and keys) to look at below.
    doms = {d["name"]: d for d in listed if d["state"] == "running"}
    show.check(bool(doms) and len(doms) == len(listed), "every domain runs",
               ", ".join(f"{d['name']} {d['state']}" for d in listed))

    show.step("each domain is its own machine: hostname, address, processes")
    for name in doms:
        code, out, err = await p.cli("exec", name, "--", "sh", "-c",
                                     "echo $(hostname): $(ip -4 -br addr show scope global) "
                                     "processes: $(ls /proc | grep -c '^[0-9]')")
        show.output(out + err)
        show.check(code == 0 and out.startswith(f"{name}:"), f"exec in {name}")

    show.step("xenstore: each domain sees only its own keys; dom0 sees all")
    code, out, err = await p.cli("exec", "family", "--", "xenstore-read", "name")
    show.output(f"family$ xenstore-read name\n{out}{err}")
    show.check(out.strip() == "family", "family reads its own keys (relative path, own socket)")
    if "work" in doms:
        work = doms["work"]["domid"]
        code, out, err = await p.cli("exec", "family", "--", "xenstore-read",
                                     f"/local/domain/{work}/name")
        show.output(f"family$ xenstore-read /local/domain/{work}/name\n{out}{err}")
    show.check("work" in doms and code != 0, "family cannot read work's keys",
               "" if "work" in doms else "work is not running")
    with p.xenstore() as xs:
        seen = {name: xs.read(f"/local/domain/{d['domid']}/name").decode()
                for name, d in doms.items()}
    show.output(f"dom0$ xenstore-read /local/domain/<id>/name  ->  {seen}")
    show.check(seen == {n: n for n in doms}, "dom0 reads every domain's keys")


async def probe(p: Platform, domain: str, script: str, *args: str) -> str:
    code, out, err = await p.cli("exec", domain, "--", sys.executable, "-c", script, *args)
    return out.strip() if code == 0 else f"FAILED exec: {err.strip()}"


async def expect(p: Platform, show: Show, domain: str, what: str, want_ok: bool,
                 script: str, *args: str, ok: Callable[[str], bool],
                 outcome: str | None = None) -> None:
    got = await probe(p, domain, script, *args)
    show.output(f"{domain}$ {what}  ->  {got[:70]}")
    outcome = outcome or ("works" if want_ok else "is refused")
    show.check(ok(got) == want_ok, f"{domain}: {what} {outcome}")


def fetched(body: str) -> bool:
    return body.startswith("hello from")


async def family_is_filtered(p: Platform, show: Show) -> None:
    show.step("the family story: categories blocked by DNS and by SNI, malware dropped")
    await expect(p, show, "family", "http://allowed.example/", True, FETCH,
                 "allowed.example", "80", "allowed.example", ok=fetched)
    await expect(p, show, "family", "resolve adult.example (blocked category)", True, RESOLVE,
                 "adult.example", ok=lambda ip: ip == "0.0.0.0", outcome="gets the sinkhole")
    await expect(p, show, "family", f"ask {PUBLIC_RESOLVER} for adult.example", True, DIG,
                 "adult.example", PUBLIC_RESOLVER, ok=lambda ip: ip == "0.0.0.0",
                 outcome="is answered by sys-sec (sinkhole)")
    await expect(p, show, "family", f"https://{ZONE['adult.example']}/ with SNI adult.example",
                 False, FETCH, ZONE["adult.example"], "443", "adult.example", ok=fetched)
    await expect(p, show, "family", "download http://allowed.example/download/eicar.txt",
                 False, FETCH, "allowed.example", "80", "allowed.example", "",
                 "/download/eicar.txt", ok=lambda body: "EICAR" in body)
    code, out, err = await p.cli("alerts", "--domain", "family")
    show.output("dom0$ hyperwall alerts --domain family\n" + out + err)
    show.check(str(EICAR_SID) in out, "the malicious download is an alert naming family")


async def untrusted_is_contained(p: Platform, show: Show) -> None:
    show.step("the disposable domain: the internet, but not the LAN or another domain")
    await expect(p, show, "untrusted", "http://allowed.example/", True, FETCH,
                 "allowed.example", "80", "allowed.example", ok=fetched)
    await expect(p, show, "untrusted", f"http://{LAN_HOST}/ (the local network)", False,
                 FETCH, LAN_HOST, "80", "printer.lan", ok=fetched)
    family = vif_addressing(p.domid("family"), 0).ip
    # Ping, answered by family's kernel if it arrives; sys-sec's own ping is the control.
    for domain, want in (("sys-sec", True), ("untrusted", False)):
        code, out, err = await p.cli("exec", domain, "--", "ping", "-c1", "-W1", family)
        show.output(f"{domain}$ ping {family} (family)  ->  exit {code}")
        show.check((code == 0) == want, f"{domain}: ping family " +
                   ("is answered (the control)" if want else "is not answered"))


async def work_uses_the_vpn(p: Platform, show: Show) -> None:
    show.step("the enterprise story: work reaches the intranet only through the tunnel")
    await expect(p, show, "work", f"http://{INTRANET}/ (intranet, via WireGuard)", True,
                 FETCH, INTRANET, "80", "intranet.corp", ok=fetched)
    await expect(p, show, "work", "http://allowed.example/ (outside the tunnel)", False,
                 FETCH, ZONE["allowed.example"], "80", "allowed.example", ok=fetched)
    await expect(p, show, "family", f"http://{INTRANET}/", False, FETCH, INTRANET, "80",
                 "intranet.corp", ok=fetched)


async def parents_report(p: Platform, show: Show) -> None:
    show.step("the parent's view: hyperwall report --domain family")
    code, out, err = await p.cli("report", "--domain", "family")
    show.output(out + err)
    show.check(code == 0 and "adult" in out, "the report shows the blocked category")


async def sys_sec_is_the_only_way_out(p: Platform, show: Show) -> None:
    show.step("every domain's one link is its vif into sys-sec; only sys-sec has the uplink")
    code, out, err = await p.cli("exec", "sys-sec", "--", "ip", "-o", "link")
    sys_sec_links = {index: name.split("@")[0] for index, name in LINK.findall(out)}
    show.check(code == 0 and "uplink0" in sys_sec_links.values(), "sys-sec holds the uplink",
               "uplink0" if code == 0 else err.strip())
    code, out, _ = await p.cli("--json", "list")
    guests = [d for d in json.loads(out) if d["name"] != "sys-sec"] if code == 0 else []
    show.check(bool(guests), "the guests are listed")
    for d in guests:
        code, out, err = await p.cli("exec", d["name"], "--", "ip", "-o", "link")
        links = {name for _, name in LINK.findall(out)} - {"lo"}
        show.output(f"{d['name']}$ ip -o link  ->  {sorted(links)}")
        # A veth shows its peer's ifindex (eth0@ifN): N must be this guest's vif in sys-sec.
        peers = [re.fullmatch(r"eth0@if(\d+)", name) for name in links]
        ok = code == 0 and len(peers) == 1 and peers[0] is not None and \
            sys_sec_links.get(peers[0].group(1)) == f"vif{d['domid']}.0"
        show.check(ok, f"{d['name']}'s only link leads to sys-sec's vif{d['domid']}.0",
                   "" if ok else out.strip() + err.strip())


STORIES: list[Part] = [family_is_filtered, untrusted_is_contained, work_uses_the_vpn,
                       parents_report]


async def run(first_domid: int = 1, prefix: str | None = None) -> int:
    """The demo; its domains take domids from `first_domid` up, and the simulated internet's
    namespaces are named `<prefix>-*`."""
    show = Show()
    net = SimNet(prefix or f"hwdemo{os.getpid() % 1000}")
    files = {**SYS_SEC_FILES, "syssec.toml": SYS_SEC_FILES["syssec.toml"] + net.vpn_settings()}
    platform = Platform(first_domid=first_domid, sys_sec_files=files)
    print(f"{BOLD}Hyperwall demo{RESET}: an embedded platform in {platform.dir} "
          "(torn down at the end)")
    try:
        show.step("starting hyperwall-dom0d (it starts its own hyperwall-xenstored)")
        platform.start()
        code, _, err = await platform.cli("--json", "list")
        show.check(code == 0, "dom0d serves the control API",
                   str(platform.socket) if code == 0 else err.strip())
        await domains_are_isolated(platform, show)
        show.step("plugging the simulated internet (and the corporate VPN server behind it) "
                  "into sys-sec's uplink")
        net.plug(f"hw-{platform.domid('sys-sec')}")
        await sys_sec_is_the_only_way_out(platform, show)
        for story in STORIES:
            await story(platform, show)
        show.step("hyperwall down")
        code, out, err = await platform.cli("down")
        show.output(out + err)
        show.check(code == 0, "every domain stopped")
    finally:
        net.close()
        await platform.close()
    print()
    if show.failed:
        print(f"{RED}{len(show.failed)} check(s) failed:{RESET} " + "; ".join(show.failed))
        return 1
    print(f"{GREEN}all checks passed{RESET}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dom0.sim.demo", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--first-domid", type=int, default=1, metavar="N",
                        help="the domains' domids start here (default 1)")
    parser.add_argument("--prefix", metavar="P", help="the simulated internet's namespaces "
                        "are P-inet and P-corp (default hwdemo<pid>)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("make demo needs root (namespaces, cgroups, mounts): run it with sudo")
    sys.exit(asyncio.run(run(args.first_domid, args.prefix)))


if __name__ == "__main__":
    main()
