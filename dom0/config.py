"""Domain definitions: one TOML file per domain in a config dir, validated whole before use.

A definition names what a domain is (kind, backend, resources, network policy, who may
use it). Loading is all-or-nothing: one bad file makes `load_config_dir` raise with the
file, the key and the reason, so nothing starts half-configured.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

DEFAULT_CONFIG_DIR = Path("/etc/hyperwall/domains")
KINDS = ("sys-sec", "app", "disposable")
BACKENDS = ("ns", "qemu", "xen")
POLICIES = ("internet", "filtered", "vpn-only", "lan", "offline", "uplink")  # uplink: sys-sec only
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\$?$")
# What dom0 does when a scan (at rest or in flight) finds something in a domain.
ON_INFECTION = ("alert", "offline", "quarantine", "reset")
DURATION_RE = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SCAN_EVERY_MIN = 60        # seconds: a shorter period would keep sys-sec scanning forever


class ConfigError(ValueError):
    """A definition is wrong: says which file, which key, and why."""

    def __init__(self, where: str, key: str, reason: str) -> None:
        self.where, self.key, self.reason = where, key, reason
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


@dataclass(frozen=True)
class Autostart:
    on_boot: bool = False
    # Start when the uplink is on the corporate network: a name that must resolve to an address.
    probe_name: str | None = None
    probe_address: str | None = None


@dataclass(frozen=True)
class DomainSpec:
    name: str
    kind: str
    backend: str = "ns"
    memory_mb: int = 256
    vcpus: int = 1
    cpu_weight: int = 100           # relative CPU share, cgroup cpu.weight scale (1..10000)
    policy: str = "internet"
    autostart: Autostart = field(default_factory=Autostart)
    users: tuple[str, ...] = ()     # local accounts (besides the owner) allowed to use it
    template: str = "default"
    # Paths inside the domain's tree that a reset keeps (after scanning them), relative.
    persist: tuple[str, ...] = ()
    on_infection: str = "alert"
    scan_every: int | None = None   # seconds between scheduled scans; None: none scheduled
    source: str = ""                # the file it came from, for messages

    @property
    def is_sys_sec(self) -> bool:
        return self.kind == "sys-sec"


_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "kind": str, "backend": str, "memory": int, "vcpus": int, "cpu_weight": int,
    "policy": str, "autostart": (bool, dict), "users": list, "template": str,
    "persist": list, "on_infection": str, "scan_every": str,
}


def _check_type(where: str, key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    # bool is an int in Python; a definition saying `memory = true` is still wrong.
    if isinstance(value, bool) and expected is int or not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(
            t.__name__ for t in expected)
        raise ConfigError(where, key, f"expected {names}, got {type(value).__name__} {value!r}")


def _int_in(where: str, key: str, value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise ConfigError(where, key, f"{value} is out of range {lo}..{hi}")
    return value


def _choice(where: str, key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(where, key, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _autostart(where: str, raw: bool | dict[str, Any]) -> Autostart:
    if isinstance(raw, bool):
        return Autostart(on_boot=raw)
    unknown = set(raw) - {"on_boot", "probe_name", "probe_address"}
    if unknown:
        raise ConfigError(where, f"autostart.{sorted(unknown)[0]}", "unknown key")
    for key in ("probe_name", "probe_address"):
        if key in raw:
            _check_type(where, f"autostart.{key}", raw[key], str)
    if ("probe_name" in raw) != ("probe_address" in raw):
        raise ConfigError(where, "autostart", "probe_name and probe_address go together")
    on_boot = raw.get("on_boot", False)
    _check_type(where, "autostart.on_boot", on_boot, bool)
    return Autostart(on_boot, raw.get("probe_name"), raw.get("probe_address"))


def parse_duration(text: str) -> int:
    """`"90s"`, `"30m"`, `"6h"`, `"1d"` as seconds; ValueError saying what is wrong."""
    m = DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration (a whole number and one of s, m, h, d, "
                         "e.g. \"6h\")")
    return int(m.group(1)) * _UNIT[m.group(2)]


def _scan_every(where: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        seconds = parse_duration(raw)
    except ValueError as e:
        raise ConfigError(where, "scan_every", str(e)) from None
    if seconds < SCAN_EVERY_MIN:
        raise ConfigError(where, "scan_every", f"{raw!r} is shorter than the minimum, "
                          f"{SCAN_EVERY_MIN} s")
    return seconds


def _persist(where: str, raw: list[Any]) -> tuple[str, ...]:
    """Lexical checks only (the tree is not at hand when a definition is read); the
    symlinks a domain may have planted are refused when an entry is used, by
    `persist_path`."""
    entries: list[str] = []
    for i, entry in enumerate(raw):
        key = f"persist[{i}]"
        if not isinstance(entry, str) or not entry.strip():
            raise ConfigError(where, key, f"{entry!r} is not a path")
        p = PurePosixPath(entry)
        if p.is_absolute():
            raise ConfigError(where, key, f"{entry!r} is absolute; persist entries are "
                              "relative to the domain's tree (e.g. \"home/user/Documents\")")
        if ".." in p.parts:
            raise ConfigError(where, key, f"{entry!r} leaves the domain's tree ('..')")
        if "\0" in entry:
            raise ConfigError(where, key, f"{entry!r} holds a NUL byte")
        norm = str(p)
        if norm == ".":
            raise ConfigError(where, key, f"{entry!r} is the whole tree; a reset that keeps "
                              "everything keeps the infection too")
        if norm in entries:
            raise ConfigError(where, key, f"{entry!r} is listed twice")
        entries.append(norm)
    return tuple(entries)


class PersistEscape(ValueError):
    """A persist entry that resolves outside the domain's tree (through a symlink)."""

    def __init__(self, domain: str, entry: str, reason: str) -> None:
        self.domain, self.entry = domain, entry
        super().__init__(f"domain {domain!r}: persist entry {entry!r}: {reason}")


def persist_path(root: Path, domain: str, entry: str) -> Path:
    """Where `entry` is inside the tree at `root`, refusing any entry a symlink in the
    tree (the domain's own doing) would take elsewhere: every component is checked
    without following links, so a link is never followed, whatever it points at."""
    p = PurePosixPath(entry)
    if p.is_absolute() or ".." in p.parts:
        raise PersistEscape(domain, entry, "not a relative path inside the domain's tree")
    here = root
    for part in p.parts:
        here = here / part
        if here.is_symlink():
            raise PersistEscape(domain, entry, f"{here.relative_to(root)} is a symlink "
                                f"(to {os.readlink(here)!r}); persist entries are never "
                                "followed through links")
    return here


def parse_domain(text: str, where: str) -> DomainSpec:
    """Parse one definition; `where` names its source in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(where, "", f"not valid TOML: {e}") from None
    for key, value in raw.items():
        if key not in _KEYS:
            raise ConfigError(where, key, f"unknown key (known: {', '.join(_KEYS)})")
        _check_type(where, key, value, _KEYS[key])
    for key in ("name", "kind"):
        if key not in raw:
            raise ConfigError(where, key, "missing")
    name = raw["name"]
    if not NAME_RE.match(name):
        raise ConfigError(where, "name", f"{name!r} must be lowercase letters, digits and '-', "
                          "starting with a letter, at most 32 characters")
    users = raw.get("users", [])
    for i, user in enumerate(users):
        if not isinstance(user, str) or not USER_RE.match(user):
            raise ConfigError(where, f"users[{i}]", f"{user!r} is not a valid user name")
    return DomainSpec(
        name=name,
        kind=_choice(where, "kind", raw["kind"], KINDS),
        backend=_choice(where, "backend", raw.get("backend", "ns"), BACKENDS),
        memory_mb=_int_in(where, "memory", raw.get("memory", 256), 32, 1 << 20),
        vcpus=_int_in(where, "vcpus", raw.get("vcpus", 1), 1, 128),
        cpu_weight=_int_in(where, "cpu_weight", raw.get("cpu_weight", 100), 1, 10000),
        policy=_choice(where, "policy", raw.get("policy", "internet"), POLICIES),
        autostart=_autostart(where, raw.get("autostart", False)),
        users=tuple(users),
        template=raw.get("template", "default"),
        persist=_persist(where, raw.get("persist", [])),
        on_infection=_choice(where, "on_infection", raw.get("on_infection", "alert"),
                             ON_INFECTION),
        scan_every=_scan_every(where, raw.get("scan_every")),
        source=where,
    )


def load_config_dir(path: Path = DEFAULT_CONFIG_DIR) -> dict[str, DomainSpec]:
    """Every `*.toml` in `path`, validated together: exactly one sys-sec, unique names."""
    if not path.is_dir():
        raise ConfigError(str(path), "", "config dir does not exist")
    specs: dict[str, DomainSpec] = {}
    for file in sorted(path.glob("*.toml")):
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(str(file), "", f"cannot read: {e}") from None
        spec = parse_domain(text, str(file))
        if spec.name in specs:
            raise ConfigError(str(file), "name",
                              f"{spec.name!r} is already defined in {specs[spec.name].source}")
        specs[spec.name] = spec
    sys_sec = [s.name for s in specs.values() if s.is_sys_sec]
    if len(sys_sec) != 1:
        raise ConfigError(str(path), "kind",
                          f"exactly one sys-sec domain is needed, found {len(sys_sec)}: {sys_sec}")
    return specs


STANDARD_DIR = Path(__file__).resolve().parents[1] / "domains" / "standard"
