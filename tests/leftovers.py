"""What a destroyed domain may not leave behind, found on the host itself."""
from __future__ import annotations

from pathlib import Path

from dom0.backends._ns_cgroup import DomainCgroup
from dom0.backends.ns import NETNS_DIR, netns_name


def processes_in(domid: int) -> list[int]:
    """Every live host process whose cgroup names this domain, found by scanning /proc.

    A zombie is skipped: it is dead, and its reaping is up to its parent, here the host's
    PID 1 for bubblewrap's detached outer process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                in_domain = f"/hyperwall/dom-{domid}\n" in (entry / "cgroup").read_text()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if in_domain and state != "Z":
                found.append(int(entry.name))
    return found


def leftovers(domid: int) -> list[str]:
    """Each trace of domain `domid` still on the host: namespace, cgroup, processes."""
    found = []
    if (NETNS_DIR / netns_name(domid)).exists():
        found.append(f"netns {netns_name(domid)}")
    found += [f"cgroup {d}" for d in DomainCgroup(domid).dirs() if d.exists()]
    found += [f"process {pid}" for pid in processes_in(domid)]
    return found


def mounts_under(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]
