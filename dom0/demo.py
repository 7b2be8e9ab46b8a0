"""`make demo`: brings up the embedded platform in a scratch folder and shows, with checks,
what it protects; then tears it all down. Exits 1 if any check failed.

Each part is one function taking the running platform; they run in order.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable

from dom0.embedded import Platform

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
    doms = {d["name"]: d for d in json.loads(out)} if code == 0 else {}
    show.check(bool(doms) and all(d["state"] == "running" for d in doms.values()),
               "every domain runs")

    show.step("each domain is its own machine: hostname, address, processes")
    for name in doms:
        code, out, err = await p.cli("exec", name, "--", "sh", "-c",
                                     "echo $(hostname): $(ip -4 -br addr show scope global) "
                                     "processes: $(ls /proc | grep -c '^[0-9]')")
        show.output(out + err)
        show.check(code == 0 and out.startswith(f"{name}:"), f"exec in {name}")

    show.step("xenstore: each domain sees only its own keys; dom0 sees all")
    work = doms.get("work", {}).get("domid")
    code, out, err = await p.cli("exec", "family", "--", "xenstore-read", "name")
    show.output(f"family$ xenstore-read name\n{out}{err}")
    show.check(out.strip() == "family", "family reads its own keys (relative path, own socket)")
    code, out, err = await p.cli("exec", "family", "--", "xenstore-read",
                                 f"/local/domain/{work}/name")
    show.output(f"family$ xenstore-read /local/domain/{work}/name\n{out}{err}")
    show.check(code != 0, "family cannot read work's keys")
    with p.xenstore() as xs:
        seen = {name: xs.read(f"/local/domain/{d['domid']}/name").decode()
                for name, d in doms.items()}
    show.output(f"dom0$ xenstore-read /local/domain/<id>/name  ->  {seen}")
    show.check(seen == {n: n for n in doms}, "dom0 reads every domain's keys")


PARTS: list[Part] = [domains_are_isolated]


async def run() -> int:
    show = Show()
    platform = Platform()
    print(f"{BOLD}Hyperwall demo{RESET}: an embedded platform in {platform.dir} "
          "(torn down at the end)")
    try:
        show.step("starting hyperwall-dom0d (it starts its own hyperwall-xenstored)")
        platform.start()
        show.check(True, "dom0d serves the control API", str(platform.socket))
        for part in PARTS:
            await part(platform, show)
        show.step("hyperwall down")
        code, out, err = await platform.cli("down")
        show.output(out + err)
        show.check(code == 0, "every domain stopped")
    finally:
        await platform.close()
    print()
    if show.failed:
        print(f"{RED}{len(show.failed)} check(s) failed:{RESET} " + "; ".join(show.failed))
        return 1
    print(f"{GREEN}all checks passed{RESET}")
    return 0


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("make demo needs root (namespaces, cgroups, mounts): run it with sudo")
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
