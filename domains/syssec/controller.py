"""sys-sec's controller: applies each guest's policy on the fly and keeps the inline engine
running. Started by the agent in sys-sec (`python -m domains.syssec.controller`).

- Watches its own `backend/vif` in xenstore (what dom0 wrote for each guest: address,
  policy, name); on every change recompiles the whole firewall and applies it with one
  `iptables-restore` (atomic), writes the address->name map, and regenerates the category
  rules (TLS SNI, HTTP Host) for `filtered` guests.
- Runs the resolver `filtered` guests are forced to use: blocked names get the sinkhole,
  each block logged as an EVE alert with the `hyperwall` category object.
- Runs `hyperwall-ipsd` workers, one per core by default (--workers N), on NFQUEUE 0..N-1
  behind `--queue-balance` (both directions of a flow on one worker), and restarts each when
  it dies (`domains.supervise`, every tenth of a second); while one is down its queue
  forwards nothing (fail closed) and the others keep going. A reload reaches every worker.
- Runs ClamAV's `clamd` the same way, once the bundle in force carries a ClamAV database
  (`bundles/current/clamav/`): on `run/clamd.sock` with the clamd.conf `netsec.clamav`
  generates (`run/clamd.conf`), restarted when it dies; its state in `data/hyperwall/clamd`.

Folders, under --state-dir (dom0 sees it as its STATE/sys-sec): `rules/` (the provider's or
the owner's rules), `lists/` (one block list per category, `<category>.txt`; --lists moves
it), `log/` (`eve.json` from the engine, `dns.json` from the resolver), `run/` (generated
files: `domains.json`, `hyperwall-policy.rules` unless --rules-dir moves it; each worker's
`ipsd.pid.N` and `ipsd.sock.N`, N its queue).

The command line overrides `syssec.toml` where both say something (--uplink), and says who
runs the engine: by default the controller starts and supervises `hyperwall-ipsd` itself;
with --ipsd-pidfile an engine started by someone else is only signalled (SIGHUP) when its
rules or the domains map change; --no-engine forwards without inspection (fail open: for
tests and bring-up only, and said so in the log and in `data/hyperwall/ips`).

SIGHUP to the controller re-reads the block lists (`data/hyperwall/lists` then names each
category and its number of sites).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import os
import shutil
import signal
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clamav_client.clamd import ClamdError

from domains.logsetup import setup_logging
from domains.restart import Backoff
from domains.runner import CommandError, run
from domains.supervise import Supervisor
from domains.syssec import security_service, uplink_check
from domains.syssec.antivirus import ClamdScanner
from domains.syssec.ipsd_pool import default_workers, plan_queues, worker_argv, worker_path
from domains.syssec.resolver import Decision, Resolver, serve
from domains.syssec.vpn import IFACE as VPN_IFACE
from domains.syssec.vpn import Tunnel, VpnConfig, VpnConfigError
from netsec import clamav, eve
from netsec.blocklist import Blocklist, BlocklistError, compose, load_good, parse_window, save_good
from netsec.firewall import FirewallConfig, FirewallError, Rulesets, compile_rulesets
from netsec.policy import Plan, VifKeys, category_rules, dns_rules, plan

if TYPE_CHECKING:
    from domains.syssec.updates import Updater

log = logging.getLogger("hyperwall.syssec")
GATEWAY = "10.137.255.254"
IPSD_BACKOFF = Backoff(first=0.1, base=0.1, cap=0.1, stable_after=10.0)
# clamd's outage holds only files (the engine's hold fails them closed), not every packet:
# a clamd that keeps dying on its database is retried ever more slowly, loading it is costly.
CLAMD_BACKOFF = Backoff(first=0.1, base=0.5, cap=10.0, stable_after=30.0)
CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
SETTLE = 0.02          # changes arriving together are applied together
PROBE_INTERVAL = 2.0
SCHEDULE_CHECK = 30.0
POLICY_RULES = "hyperwall-policy.rules"
LAST_GOOD = "lists-good.json"     # under --state-dir: the last block lists that loaded


@dataclass(frozen=True)
class Settings:
    """sys-sec's own settings (`STATE/syssec.toml`, written by dom0; all optional)."""

    uplink: str = "uplink0"
    dns_upstream: str = "9.9.9.9"
    # Where the provider's channel listens (host:port on the uplink side); None: no channel.
    provider_listen: str | None = None
    # The provider's TUF repository (its base URL) and how often to poll it.
    subscription_url: str | None = None
    subscription_interval: float = 300.0
    doh_addresses: tuple[str, ...] = ()
    vpn: VpnConfig | None = None
    # Destinations whose flows skip the engine (judged clean by the owner).
    clean: tuple[str, ...] = ()
    # When a category is enforced, e.g. {"games": ["mon-fri 08:00-16:00"]}; default always.
    schedules: dict[str, list[str]] = field(default_factory=dict)
    # Suricata settings for the engine, each "NAME=VALUE" as hyperwall-ipsd's --set takes
    # it (e.g. "app-layer.protocols.http.parser=python").
    engine_set: tuple[str, ...] = ()

    @property
    def vpn_iface(self) -> str | None:
        return VPN_IFACE if self.vpn else None

    @classmethod
    def load(cls, path: Path) -> Settings:
        if not path.exists():
            return cls()
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SystemExit(f"{path}: {e}") from None
        known = {"uplink", "dns_upstream", "doh_addresses", "vpn", "clean", "schedules",
                 "provider_listen", "subscription_url", "subscription_interval",
                 "engine_set"}
        if set(raw) - known:
            raise SystemExit(f"{path}: unknown setting {sorted(set(raw) - known)[0]!r}")
        engine_set = raw.get("engine_set", [])
        if not isinstance(engine_set, list) or not all(
                isinstance(x, str) and "=" in x for x in engine_set):
            raise SystemExit(f"{path}: engine_set: want a list of \"NAME=VALUE\" strings")
        try:
            tunnel = VpnConfig.from_settings(raw["vpn"], str(path)) if "vpn" in raw else None
        except VpnConfigError as e:
            raise SystemExit(str(e)) from None
        schedules = raw.get("schedules", {})
        if not isinstance(schedules, dict):
            raise SystemExit(f"{path}: [schedules] must be a table")
        for category, windows in schedules.items():
            if not isinstance(windows, list) or not windows \
                    or not all(isinstance(w, str) for w in windows):
                raise SystemExit(f"{path}: [schedules] {category}: must be a list of time "
                                 "windows, e.g. [\"mon-fri 20:00-07:00\"]")
            try:
                for w in windows:
                    parse_window(w)
            except BlocklistError as e:
                raise SystemExit(f"{path}: [schedules] {category}: {e}") from None
        return cls(uplink=raw.get("uplink", cls.uplink),
                   dns_upstream=raw.get("dns_upstream", cls.dns_upstream),
                   doh_addresses=tuple(raw.get("doh_addresses", ())), vpn=tunnel,
                   clean=tuple(raw.get("clean", ())), schedules=dict(schedules),
                   provider_listen=raw.get("provider_listen"),
                   subscription_url=raw.get("subscription_url"),
                   subscription_interval=float(raw.get("subscription_interval", 300.0)),
                   engine_set=tuple(engine_set))


@dataclass(frozen=True)
class Launch:
    """What the command line says: where the controller's files are, who runs the engine."""

    lists: Path
    rules_dir: Path                      # where hyperwall-policy.rules is written
    ipsd_pidfile: Path | None = None     # an engine run by someone else: signal, not start
    ipsd_socket: Path | None = None      # its counters (--socket), to learn a reload's outcome
    engine: bool = True                  # False: no inspection at all (fail open)
    workers: int = 1                     # engine workers the controller runs, one per queue
    vpn_iface: str | None = None         # a tunnel managed elsewhere, for vpn-only guests

    @classmethod
    def defaults(cls, state: Path) -> Launch:
        return cls(lists=state / "lists", rules_dir=state / "run")

    @property
    def policy_rules(self) -> Path:
        return self.rules_dir / POLICY_RULES


class Controller:
    def __init__(self, store: Any, state: Path, settings: Settings,
                 launch: Launch | None = None) -> None:
        self.store = store
        self.state = state
        self.settings = settings
        self.launch = launch or Launch.defaults(state)
        for folder in (state / "rules", state / "log", state / "run", self.launch.lists,
                       self.launch.rules_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.dns_log = eve.EveWriter(
            open(state / "log" / "dns.json", "a", buffering=1))  # noqa: SIM115
        self.lists_error: str | None = None
        self.lists_warning: str | None = None
        self.blocklist = self._load_lists(Blocklist(), starting=True)
        self.write_lists_status()
        self.filtered: set[str] = set()
        self.resolver = _LoggedResolver(self.blocklist, self.log_block,
                                        lambda client: client in self.filtered)
        self.names: dict[str, str] = {}
        self.workers: list[Supervisor] = []     # when the controller runs the engine
        self.worker_status: dict[int, str] = {}
        self.clamd: Supervisor | None = None    # when the bundle in force has a database
        self.applied: Rulesets | None = None
        self.loop: asyncio.AbstractEventLoop | None = None    # known once apply() ran
        self.reapplying: set[asyncio.Task[None]] = set()

    def _load_lists(self, fallback: Blocklist, *, starting: bool = False) -> Blocklist:
        """The owner's lists and the provider's (the bundle in force), composed with both
        schedules, the owner's winning (blocklist.compose). When they cannot be used: the
        lists in force, or at a start the last good lists kept on disk. A start on those,
        or with fewer sites than they hold, says so loudly (an EVE alert and the status
        line `data/hyperwall/lists`)."""
        self.lists_warning = None
        try:
            blocklist, reports, schedules, notes = compose(
                sorted(self.launch.lists.glob("*.txt")),
                sorted((self.state / "bundles" / "current" / "lists").glob("*.txt")),
                self.settings.schedules, self._provider_policy()["schedules"])
        except (ValueError, OSError) as e:   # BlocklistError, BundleError, unreadable
            self.lists_error = str(e)
            if not starting:
                log.error("block lists: %s; the lists in force stay (%d sites)", e,
                          len(fallback))
                return fallback
            try:
                good = load_good(self.state / LAST_GOOD)
            except BlocklistError as bad:
                log.error("%s", bad)
                good = None
            if good is None:
                self.loudly(f"block lists did not load ({e}) and no last good lists are "
                            "kept: nothing is blocked")
                return fallback
            self.loudly(f"block lists did not load ({e}); running on the last good lists "
                        f"({len(good[0])} sites)")
            return good[0]
        self.lists_error = None
        for r in reports:
            if getattr(r, "skipped", None):
                log.warning("%s", r)
        for note in notes:
            log.warning("block lists: %s", note)
        if starting:
            try:
                good = load_good(self.state / LAST_GOOD)
            except BlocklistError:
                good = None    # overwritten below by lists that do load
            if good is not None and len(blocklist) < len(good[0]):
                self.loudly(f"block lists hold {len(blocklist)} sites, fewer than the "
                            f"{len(good[0])} of the last good lists")
        try:
            save_good(self.state / LAST_GOOD, blocklist, schedules)
        except OSError as e:
            log.error("the last good lists not kept: %s", e)
        log.info("block lists: %d sites in %d categories", len(blocklist),
                 len(blocklist.categories))
        return blocklist

    def write_lists_status(self) -> str:
        """The status line of the lists in force, for the SecurityService's GetStats (the
        file) and for dom0 (the caller writes it to `data/hyperwall/lists`)."""
        text = self.lists_text()
        try:
            _write_changed(self.state / "log" / security_service.LISTS_STATUS, text + "\n")
        except OSError as e:
            log.error("the lists' status line not written: %s", e)
        return text

    def _provider_policy(self) -> dict[str, Any]:
        """The policy of the bundle in force, validated again (it may have changed on disk
        since verify took it); raises BundleError when it does not hold."""
        current = self.state / "bundles" / "current"
        if not (current / "policy.toml").exists():
            return {"schedules": {}, "doh_addresses": []}
        from netsec.bundle import applied_policy  # its cryptography only where a bundle is
        return applied_policy(current)

    def loudly(self, message: str) -> None:
        """What the owner must not miss: in the log, as an EVE alert in the controller's
        EVE log (hyperwall alerts shows it) and on the status line."""
        log.error("%s", message)
        self.lists_warning = message
        self.dns_log.write(eve.alert_at(
            time.time(), src_ip=GATEWAY, dest_ip=GATEWAY, proto="", action="allowed",
            signature=f"hyperwall lists: {message}", category="hyperwall block lists",
            severity=1, hyperwall={"category": "lists", "lists": message}))

    # -- policy ----------------------------------------------------------------------------

    async def snapshot(self) -> list[VifKeys]:
        keys = []
        for domid in await self.store.ls("backend/vif"):
            if not domid.isdigit():
                continue
            for devid in await self.store.ls(f"backend/vif/{domid}"):
                if devid.isdigit():
                    d = f"backend/vif/{domid}/{devid}"
                    keys.append(VifKeys(int(domid), int(devid), await self.store.read(f"{d}/ip"),
                                        await self.store.read(f"{d}/hyperwall/policy"),
                                        await self.store.read(f"{d}/hyperwall/name")))
        return keys

    def doh_addresses(self) -> tuple[str, ...]:
        """The DoH endpoints filtered guests may not reach: the owner's (syssec.toml) and
        the provider's (the bundle in force, checked when it was applied)."""
        try:
            provider = self._provider_policy()["doh_addresses"]
        except (ValueError, OSError) as e:
            log.error("the bundle's DoH endpoints not blocked: %s", e)
            provider = []
        return tuple(dict.fromkeys([*self.settings.doh_addresses, *provider]))

    async def apply(self) -> None:
        self.loop = asyncio.get_running_loop()
        p = plan(await self.snapshot())
        for error in p.errors:
            log.error("%s", error)
        listen = self.settings.provider_listen
        cfg = FirewallConfig(uplink=self.settings.uplink, gateway=GATEWAY,
                             queue=0 if self.launch.engine else None,
                             queue_count=self.queue_count,
                             vpn_iface=self.launch.vpn_iface or self.settings.vpn_iface,
                             doh_addresses=self.doh_addresses(),
                             provider_port=int(listen.rpartition(":")[2]) if listen else None)
        try:
            rulesets = compile_rulesets(cfg, p.vifs)
        except FirewallError as e:   # plan() refused what compiles badly; keep what runs
            log.error("firewall not changed: %s", e)
            await self.store.write("data/hyperwall/policy-errors", f"firewall not changed: {e}")
            return
        if rulesets != self.applied:
            await apply_rulesets(rulesets)
            self.applied = rulesets
            log.info("firewall applied: %s", ", ".join(
                f"{p.names[v.ip]}={v.policy}" for v in p.vifs) or "no guests")
        # Every time: a vif made after the last change (netback's, on Xen) gets them too.
        write_sysctls(rulesets.sysctls)
        self.publish(p)
        # Written last, once all of it is in force, so whoever watches (dom0, tests) sees
        # what holds now.
        await self.store.write("data/hyperwall/policy-errors", "\n".join(p.errors))
        await self.store.write("data/hyperwall/policy-applied", p.applied_text())

    def publish(self, p: Plan) -> None:
        """What the engine reads of the plan: the guests' names (ipsd notices a new
        domains.json by itself) and the category rules, with a reload only when those
        changed (each costs the engine a rule load, and guests' keys change often while
        they start)."""
        self.names = p.names
        self.filtered = set(p.filtered)
        _write_changed(self.state / "run" / "domains.json", p.domains_json())
        if self.write_category_rules():
            self.reload_ipsd()

    def write_category_rules(self) -> bool:
        """The SNI/Host rules of the categories in force now and the DNS rules, for the
        filtered guests; True if they changed."""
        rules = category_rules(self.blocklist, sorted(self.filtered), dt.datetime.now()) + \
            dns_rules(sorted(self.filtered), GATEWAY)
        return _write_changed(self.launch.policy_rules, rules)

    async def follow_schedules(self) -> None:
        """A category's time window opening or closing changes the engine's rules (the
        resolver asks the block list at each query and needs nothing)."""
        while True:
            await asyncio.sleep(SCHEDULE_CHECK)   # wall-clock boundaries give no event
            if self.write_category_rules():
                log.info("category schedules changed: engine rules regenerated")
                self.reload_ipsd()

    async def reload_lists(self) -> None:
        """SIGHUP: the owner changed a list in --lists; the resolver and the engine's
        category rules follow, and `data/hyperwall/lists` says what is now in force."""
        self.blocklist = self._load_lists(self.blocklist)
        self.resolver.blocklist = self.blocklist
        if self.write_category_rules():
            self.reload_ipsd()
        await self.store.write("data/hyperwall/lists", self.write_lists_status())

    def lists_text(self) -> str:
        """`adult=2 games=1`; with `error: ...; kept: ` before it when a reload failed, and
        `WARNING: ...; in force: ` when sys-sec started on less than its last good lists."""
        text = " ".join(f"{name}={len(c.domains)}"
                        for name, c in sorted(self.blocklist.categories.items()))
        if self.lists_warning:
            return f"WARNING: {self.lists_warning}; in force: {text}"
        return f"error: {self.lists_error}; kept: {text}" if self.lists_error else text

    def reload_content(self) -> None:
        """A bundle was swapped in: lists, category rules and the engine's rules follow.
        Raises when the engine cannot take them, which its counters tell (the updater then
        rolls back)."""
        self.blocklist = self._load_lists(self.blocklist)
        self.resolver.blocklist = self.blocklist
        self.write_lists_status()
        self.write_category_rules()
        self.reapply_soon()
        self.reload_clamd()
        self._follow_scanners()
        if not self.launch.engine:
            return
        pids = self.engine_pids()
        if not any(pids):
            raise OSError("the engine is not running")
        counters: list[Callable[[], dict[str, Any]] | None] = [None] * len(pids)
        sockets = self.engine_sockets()
        if sockets:
            from domains.syssec.ipsd import (
                read_stats,  # the engine's module: only once a bundle came
            )
            counters = [functools.partial(read_stats, s) for s in sockets]
        try:
            _, said = security_service.reload_workers(pids, counters)
        except security_service.ReloadError as e:
            raise OSError(e.message) from None
        log.info("engine reloaded: %s", said)

    @property
    def queue_count(self) -> int:
        """The queues the firewall balances over: one per worker this controller runs; an
        engine run by someone else holds queue 0 alone."""
        return self.launch.workers if self.launch.ipsd_pidfile is None else 1

    def engine_queues(self) -> list[int]:
        return plan_queues(range(self.queue_count), self.queue_count)

    def engine_sockets(self) -> list[Path]:
        """Where each worker answers its counters: those this controller starts answer on
        run/ipsd.sock.N (N the worker's queue)."""
        if self.launch.ipsd_pidfile is not None:
            return [self.launch.ipsd_socket] if self.launch.ipsd_socket else []
        return [worker_path(self.state / "run" / "ipsd.sock", q) for q in self.engine_queues()]

    def engine_pidfiles(self) -> list[Path]:
        if self.launch.ipsd_pidfile is not None:
            return [self.launch.ipsd_pidfile]
        return [worker_path(self.state / "run" / "ipsd.pid", q) for q in self.engine_queues()]

    async def watch_policy(self) -> None:
        async for _ in self.store.watch("backend/vif"):
            await asyncio.sleep(SETTLE)
            await self.try_apply()

    async def try_apply(self) -> None:
        try:
            await self.apply()
        except (CommandError, OSError) as e:   # the next change tries again
            log.error("applying policy: %s", e)
        except Exception:   # e.g. a xenstore error: the watch must outlive it
            log.exception("applying policy failed; the next change tries again")

    def reapply_soon(self) -> None:
        """From any thread (a bundle is applied in one): the firewall follows the bundle's
        policy (its DoH endpoints)."""
        def start() -> None:
            task = asyncio.ensure_future(self.try_apply())
            self.reapplying.add(task)
            task.add_done_callback(self.reapplying.discard)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(start)

    # -- the resolver ------------------------------------------------------------------------

    def log_block(self, d: Decision) -> None:
        category = str(d.category)   # a block: _LoggedResolver tells of no other
        self.dns_log.write(eve.alert_at(
            d.when.timestamp(), src_ip=d.client, dest_ip=GATEWAY, proto="UDP",
            action="blocked", signature=f"hyperwall {d.category}: {d.name} (dns)",
            category=category, severity=3,
            hyperwall={"guest": self.names.get(d.client, d.client), "guest_ip": d.client,
                       "category": category, "site": d.name, "by": "dns"}))

    async def serve_dns(self) -> list[Any]:
        return await serve(self.resolver, ("0.0.0.0", 53), (self.settings.dns_upstream, 53))

    # -- where the uplink is (dom0's autostart probes) ---------------------------------------

    async def answer_probes(self) -> None:
        answers: dict[str, str] = {}
        while True:
            try:
                for domain in await self.store.ls("hyperwall/probes"):
                    raw = await self.store.read(f"hyperwall/probes/{domain}") or b""
                    try:
                        got = await uplink_check.resolve(raw.decode("ascii"),
                                                         self.settings.dns_upstream) or "-"
                    except (UnicodeDecodeError, ValueError):
                        got = "-"
                    if answers.get(domain) != got:
                        await self.store.write(f"data/hyperwall/probes/{domain}", got)
                        answers[domain] = got
            except Exception:   # nothing restarts this task: one bad round must not end it
                log.exception("answering dom0's probes; trying again")
            await asyncio.sleep(PROBE_INTERVAL)   # DNS gives no event when an answer changes

    # -- the engine ----------------------------------------------------------------------------

    def engine_pids(self) -> list[int | None]:
        """Each worker's pid if it runs and may be signalled, else None; [] when nobody
        said where the engine is."""
        if self.launch.ipsd_pidfile is not None:
            # hyperwall-ipsd writes its pidfile once its SIGHUP handler is set.
            return [security_service.live_pid(self.launch.ipsd_pidfile)]
        return [w.pid for w in self.workers]

    def engine_state(self) -> str:
        if not self.launch.engine:
            return "off"
        pids = self.engine_pids()
        if not pids:
            return "unknown"
        return "running" if all(pids) else "restarting"

    def reload_ipsd(self) -> None:
        """SIGHUP every live worker (a dead one loads the rules as it restarts)."""
        pids = self.engine_pids() if self.launch.engine else []
        if self.launch.ipsd_pidfile is not None and self.launch.engine and not any(pids):
            log.warning("engine not reloaded: no live pid in %s", self.launch.ipsd_pidfile)
        for pid in pids:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)

    async def _worker_status(self, queue: int, text: str) -> None:
        """`data/hyperwall/ips`: one word while every worker says the same, else each
        worker's own."""
        self.worker_status[queue] = text
        said = set(self.worker_status.values())
        if len(self.worker_status) == len(self.workers) and len(said) == 1:
            line = text
        else:
            line = ", ".join(f"queue {q}: {t}" for q, t in sorted(self.worker_status.items()))
        if self.store is not None:
            await self.store.write("data/hyperwall/ips", line)

    def supervise_ipsd(self) -> list[Supervisor]:
        """The engine's workers, one per queue, each inline on its own NFQUEUE and kept
        running on its own; their state in `data/hyperwall/ips`."""
        st, rundir = self.state, self.state / "run"
        argv = [sys.executable, "-S", "-m", "domains.syssec.ipsd", "--queue", "0",
                "-S", str(st / "rules"), "-S", str(self.launch.policy_rules),
                "-S", str(st / "bundles" / "current" / "rules"),
                "--disabled", str(st / "provider" / "state.json"),
                "-l", str(st / "log"), "--domains", str(rundir / "domains.json"),
                "--pidfile", str(rundir / "ipsd.pid"), "--socket", str(rundir / "ipsd.sock"),
                *(arg for net in self.settings.clean for arg in ("--clean", net)),
                *(arg for pair in self.settings.engine_set for arg in ("--set", pair)),
                *self.scanner_args()]
        self.workers = [
            Supervisor(worker_argv(argv, q), name="ipsd", backoff=IPSD_BACKOFF,
                       on_status=functools.partial(self._worker_status, q))
            for q in self.engine_queues()]
        return self.workers

    # -- clamd ---------------------------------------------------------------------------------

    @property
    def clamd_socket(self) -> Path:
        return self.state / "run" / "clamd.sock"

    def clamav_database(self) -> Path | None:
        """The bundle's ClamAV folder, through the `current` link so that a swapped bundle
        is what clamd's RELOAD reads; None when there is no database to run clamd on."""
        folder = self.state / "bundles" / "current" / "clamav"
        if not folder.is_dir() or not any(p.suffix in clamav.DATABASE_SUFFIXES
                                          for p in folder.iterdir()):
            return None
        return folder

    def supervise_clamd(self, limits: clamav.Limits = clamav.DEFAULT_LIMITS) -> Supervisor | None:
        """clamd on the bundle's database, kept running; None (and no clamd) without one."""
        database = self.clamav_database()
        if database is None:
            return None
        conf = self.state / "run" / "clamd.conf"
        _write_changed(conf, clamav.clamd_conf(self.clamd_socket, database, limits))
        # clamd in the foreground says nothing on stdout when it serves: started is ready,
        # and whoever scans learns it is up by PING.
        self.clamd = Supervisor([CLAMD, "-c", str(conf)], name="clamd", backoff=CLAMD_BACKOFF,
                                says_ready=False,
                                on_status=self._status_to("data/hyperwall/clamd"))
        return self.clamd

    def reload_clamd(self) -> None:
        """From any thread, after a swap: clamd loads the database now in force (RELOAD: it
        serves with the old one until the new one is in, and keeps the old if the new fails,
        which the staging's clamscan has ruled out). The first bundle with a database starts
        clamd; one without stops it (its folder is gone from under it)."""
        database, sup = self.clamav_database(), self.clamd
        if sup is None:
            if database is not None and self.loop is not None:
                started = self.supervise_clamd()
                assert started is not None
                self.loop.call_soon_threadsafe(self._keep, started.run())
            return
        if database is None:
            log.warning("the bundle in force has no ClamAV database: clamd stopped")
            self.clamd = None
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._keep, sup.stop())
            return
        if sup.pid is None:
            log.info("clamd is restarting: it loads the new database as it starts")
            return
        try:
            said = ClamdScanner(self.clamd_socket).reload()
        except (ClamdError, OSError) as e:     # dying now: its restart reads the new one
            log.warning("clamd did not take RELOAD (%s); its restart loads the database", e)
            return
        log.info("clamd: %s %s", said.strip(), database)

    def _status_to(self, key: str) -> Callable[[str], Awaitable[object]] | None:
        """A supervised program's state, written to `key` (no store: a controller a test
        made to look at its programs only)."""
        return None if self.store is None else functools.partial(self.store.write, key)

    def scanner_args(self) -> list[str]:
        """ipsd's scanner flags for the bundle in force: clamd's socket when it carries a
        ClamAV database, the YARA folder when it carries rules (through `current`)."""
        yara = self.state / "bundles" / "current" / "yara"
        return [*(("--clamd-socket", str(self.clamd_socket))
                  if self.clamav_database() is not None else ()),
                *(("--yara-dir", str(yara)) if yara.is_dir() else ())]

    def _follow_scanners(self) -> None:
        """ipsd takes its scanners as flags: a swap that changes which scanners the bundle
        in force has is for each worker's next start (restarting them now would stop every
        flow)."""
        changed = False
        for worker in self.workers:
            base = list(worker.argv)
            for flag in ("--clamd-socket", "--yara-dir"):
                if flag in base:
                    at = base.index(flag)
                    del base[at:at + 2]
            argv = [*base, *self.scanner_args()]
            if argv != worker.argv:
                changed = True
                worker.argv = argv
        if changed:
            log.warning("the bundle's scanners changed (%s): the engine takes them at its "
                        "next start", " ".join(self.scanner_args()) or "none")

    def _keep(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.reapplying.add(task)
        task.add_done_callback(self.reapplying.discard)

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers))
        if self.clamd is not None:
            await self.clamd.stop()


class _LoggedResolver(Resolver):
    """The resolver, telling the controller of every name it blocked."""

    def __init__(self, blocklist: Blocklist, on_block: Callable[[Decision], None],
                 filters: Callable[[str], bool]) -> None:
        super().__init__(blocklist, filters=filters)
        self.on_block = on_block

    def _record(self, d: Decision) -> None:
        super()._record(d)
        if d.category is not None:
            self.on_block(d)


async def apply_rulesets(rulesets: Rulesets) -> None:
    """Both families' rulesets or neither. Each restore is atomic on its own; both are
    checked first, IPv6 (which only closes) goes in first, and when IPv4 then fails the
    IPv6 tables sys-sec had are put back. Raises CommandError naming the tool."""
    for tool, text in (("iptables-restore", rulesets.ipv4), ("ip6tables-restore", rulesets.ipv6)):
        await run([tool, "--test"], input=text.encode())
    before = (await run(["ip6tables-save"])).stdout
    await run(["ip6tables-restore"], input=rulesets.ipv6.encode())
    try:
        await run(["iptables-restore"], input=rulesets.ipv4.encode())
    except CommandError:
        await run(["ip6tables-restore"], input=before)
        raise


def write_sysctls(sysctls: tuple[tuple[str, str], ...], root: Path = Path("/proc/sys")) -> None:
    """Defence in depth beside the rulesets; an interface not there (yet, or any more) is
    skipped: the next change of the vif's keys sets it."""
    for key, value in sysctls:
        try:
            (root / key).write_text(value + "\n")
        except FileNotFoundError:
            continue
        except OSError as e:   # e.g. a read-only /proc/sys; the rulesets still hold
            log.warning("%s: %s", key, e)


def _write_changed(path: Path, text: str) -> bool:
    """Replaces `path` whole with `text` unless it holds that already; True if it did."""
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def provider_updater(ctl: Controller, state: Path) -> Updater | None:
    """What applies a provider's bundles, where the settings name a provider (a channel or a
    feed). Imported only then: it and what it brings (the engine's staging, TUF, the
    provider's gRPC service) are half of sys-sec's start-up, seconds on an emulated CPU."""
    if not (ctl.settings.provider_listen or ctl.settings.subscription_url):
        return None
    from domains.syssec.updates import Updater
    from netsec.trust import TrustStore
    return Updater(TrustStore(state / "provider"), state / "bundles", ctl.reload_content)


async def serve_provider(ctl: Controller, updater: Updater, state: Path) -> Any:
    """The provider's channel, when the settings open one."""
    if not ctl.settings.provider_listen:
        return None
    from domains.syssec import provider_service
    servicer = provider_service.ProviderServicer(updater.trust, updater, state / "log",
                                                 ctl.engine_state, ctl.reload_content)
    server, _ = await provider_service.serve(
        servicer, ctl.settings.provider_listen, provider_service.server_identity(state / "tls"),
        updater.trust.provider_ca)
    return server


async def follow_subscription(settings: Settings, updater: Updater, state: Path) -> None:
    """Poll the provider's TUF repository; apply what is new (verified like any bundle)."""
    from netsec import subscription
    last: bytes | None = None
    while settings.subscription_url:
        try:
            data = await asyncio.to_thread(
                subscription.poll, state / "provider" / "root.json",
                state / "run" / "tuf", settings.subscription_url)
            if data is not None and data != last:
                outcome = await asyncio.to_thread(updater.apply, data, "subscription")
                log.log(logging.INFO if outcome.applied else logging.WARNING, "subscription: %s",
                        outcome.reason)
                last = data
        except subscription.SubscriptionError as e:
            log.warning("subscription: %s", e)
        except Exception:   # the polling must outlive whatever one poll ran into
            log.exception("subscription: the poll failed; trying again later")
        await asyncio.sleep(settings.subscription_interval)


def launch_from(args: argparse.Namespace) -> Launch:
    d = Launch.defaults(args.state_dir)
    return Launch(lists=args.lists or d.lists, rules_dir=args.rules_dir or d.rules_dir,
                  ipsd_pidfile=args.ipsd_pidfile, ipsd_socket=args.ipsd_socket,
                  engine=not args.no_engine,
                  workers=args.workers or (default_workers() if args.ipsd_pidfile is None else 1),
                  vpn_iface=args.vpn_iface)


async def amain(args: argparse.Namespace) -> int:
    from dom0.xenstore.client import AsyncXenStore, connect_agent_store
    settings = Settings.load(args.state_dir / "syssec.toml")
    if args.uplink:
        settings = dataclasses.replace(settings, uplink=args.uplink)
    launch = launch_from(args)
    store = (await AsyncXenStore.connect(("unix", str(args.xenstore))) if args.xenstore
             else await connect_agent_store())
    ctl = Controller(store, args.state_dir, settings, launch)
    await ctl.apply()     # fail closed from the first moment: the firewall before the engine
    if not launch.engine:
        log.warning("--no-engine: guests' traffic is forwarded WITHOUT inspection")
        await store.write("data/hyperwall/ips", "off (--no-engine)")
    tunnel = Tunnel(settings.vpn) if settings.vpn else None
    if tunnel is not None:
        try:
            await tunnel.up()
        except (OSError, CommandError, TimeoutError) as e:   # vpn-only guests stay cut off
            log.error("the VPN tunnel did not come up: %s", e)
    dns = await ctl.serve_dns()
    security = await security_service.serve(
        args.state_dir / "log", args.state_dir / "security.sock",
        ipsd_sockets=ctl.engine_sockets(), ipsd_pidfiles=ctl.engine_pidfiles())
    updater = provider_updater(ctl, args.state_dir)
    provider = await serve_provider(ctl, updater, args.state_dir) if updater else None
    tasks = [asyncio.ensure_future(ctl.watch_policy()),
             *([asyncio.ensure_future(w.run()) for w in ctl.supervise_ipsd()]
               if launch.engine and launch.ipsd_pidfile is None else []),
             *([asyncio.ensure_future(clamd.run())]
               if (clamd := ctl.supervise_clamd()) is not None else []),
             asyncio.ensure_future(ctl.answer_probes()),
             asyncio.ensure_future(ctl.follow_schedules()),
             *([asyncio.ensure_future(follow_subscription(settings, updater, args.state_dir))]
               if updater else [])]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()    # held so that a running reload is not lost

    def on_hup() -> None:
        task = asyncio.ensure_future(ctl.reload_lists())
        reloads.add(task)
        task.add_done_callback(reloads.discard)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await store.write("data/hyperwall/lists", ctl.lists_text())
    await stop.wait()
    for t in tasks:
        t.cancel()
    for transport in dns:
        transport.close()
    await security.stop(1.0)
    if provider is not None:
        await provider.stop(1.0)
    await ctl.stop()
    if tunnel is not None:
        await tunnel.down()
    return 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m domains.syssec.controller",
                                description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/hyperwall"))
    p.add_argument("--xenstore", type=Path, help="xenstore socket (default: the domain's own)")
    p.add_argument("--uplink", metavar="IFACE", help="the uplink interface (default: "
                   "syssec.toml's uplink, else uplink0)")
    p.add_argument("--vpn-iface", metavar="IFACE", help="the tunnel vpn-only guests go out "
                   "through, when it is managed elsewhere (default: syssec.toml's [vpn])")
    p.add_argument("--lists", type=Path, metavar="DIR",
                   help="block lists, one <category>.txt each (default: STATE/lists)")
    p.add_argument("--rules-dir", type=Path, metavar="DIR", help="where the category rules "
                   f"go, as {POLICY_RULES} (default: STATE/run)")
    engine = p.add_mutually_exclusive_group()
    engine.add_argument("--ipsd-pidfile", type=Path, metavar="FILE", help="the engine is run "
                        "by someone else with this pidfile: SIGHUP it, do not start one")
    p.add_argument("--ipsd-socket", type=Path, metavar="PATH", help="with --ipsd-pidfile: "
                   "the engine's --socket, whose counters tell whether a reload took")
    engine.add_argument("--no-engine", action="store_true", help="forward without inspection "
                        "(fail open; tests and bring-up only)")
    p.add_argument("--workers", type=int, metavar="N", help="engine workers, one per "
                   "NFQUEUE 0..N-1 (default: one per core this process may use)")
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers {args.workers}: needs at least one worker")
    if args.workers not in (None, 1) and args.ipsd_pidfile is not None:
        p.error("--workers: with --ipsd-pidfile the engine is run elsewhere, on queue 0 alone")
    setup_logging("syssec")
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
