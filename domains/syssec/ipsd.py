"""`hyperwall-ipsd`: the engine inline, on the NFQUEUE sys-sec's firewall sends forwarded
traffic to. Runs inside sys-sec.

    hyperwall-ipsd --queue 0 -S RULES [-S RULES ...] [-c suricata.yaml] -l LOGDIR
                   [--socket PATH] [--pidfile PATH] [--domains FILE] [--disabled JSON]
                   [--clean CIDR|PORT ...] [--set stream.reassembly.depth=N]
                   [--bypass-after-depth | --no-bypass-after-depth]
                   [--clamd-socket PATH] [--yara-dir DIR] [--scan-timeout S]
                   [--scan-fail closed|open]

Every queued packet (an IP packet: NFQUEUE gives no link layer) goes through the same
decoder, flow table and detector as `hyperwall-ids -r`, in IPS mode: drop and reject rules
drop the packet and the rest of its flow before any guest sees it (reject also answers with
TCP RSTs or ICMP unreachable, netsec/reject.py). A TCP flow with a direction past the
reassembly depth is handed back to the kernel (connmark bypass, as Suricata's
stream.bypass; `--set stream.bypass=no` keeps it queued), so bulk transfers stop costing
the engine; so is a flow to a destination judged clean (--clean, or the
`bypass` list of -c's file). EVE goes to LOGDIR/eve.json, each record naming the guest it
concerns (`hyperwall.domain`, from the --domains map that sys-sec's controller keeps and
this process re-reads when it changes) and, for the controller's category rules, the
category. --socket answers each connection with one JSON line of live counters (what the
SecurityService's GetStats shows).

sys-sec's controller runs one such process per core, each on its own --queue behind the
firewall's `--queue-balance` (domains.syssec.ipsd_pool): they share LOGDIR/eve.json, each
line one O_APPEND write, and each answers its own --socket.

With a scanner (--clamd-socket, --yara-dir, or both), every file HTTP carries is tracked,
and the packet that completes one is held until the scanner's verdict
(domains/syssec/filehold.py): CLEAN releases it, INFECTED drops it and resets the
connection (an alert names the domain, the file, its sha256 and the signature), and no
answer within --scan-timeout, or a scanner error, is --scan-fail's (closed by default).
The scans run in worker threads; other flows keep moving meanwhile.

SIGHUP reloads the rules (every -S path), the disabled list and the domains map, keeping
every flow's state; SIGTERM stops. Prints `ready` once it holds the queue. While this
process is down nothing is forwarded (the firewall queues without bypass).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import queue as queue_mod
import select
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from domains.logsetup import setup_logging
from domains.syssec.filehold import FAIL_MODES, SCAN_TIMEOUT, FileHold, Release, ScanJob
from domains.syssec.inline import InlineQueue
from netsec import eve, reject
from netsec.cli import SET_HELP, UsageError, ignored_note, parse_sets, parse_settings
from netsec.decode import Decoder, DecoderConfig
from netsec.engine import Engine, EngineConfig, Verdict, settle_heap
from netsec.filescan import FileScanner, Outcome, ScanResult
from netsec.flow import FlowConfig, FlowTable
from netsec.rules import load_rules
from netsec.rules.errors import RuleError
from netsec.rules.variables import Variables

log = logging.getLogger("hyperwall.ipsd")
LINKTYPE_RAW = 101
STATS_INTERVAL = 30.0
DOMAINS_CHECK = 1.0     # how often the --domains file is looked at (a file gives no event)
SKIPPED_SHOWN = 5


class ConfigError(ValueError):
    """A bad -c file, --clean entry or --set: the message names what and where."""


# The inline decisions' own counters (`Ipsd.stats` keys), which a Decision asks to bump.
Count = Literal["rejected_flows", "undecodable", "bypassed_depth", "bypassed_clean",
                "files_held", "files_blocked"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one queued packet comes to, as data for the shell to carry out (as mitmproxy's
    layers yield commands): the verdict NFQUEUE applies (BYPASS: accept and mark the flow;
    None: held until a file's verdict, `scan` the files to scan for it), the packets to send
    (a reject's answers), the EVE records to write, the counters to bump."""

    verdict: Verdict | None
    send: tuple[bytes, ...] = ()
    eve: tuple[eve.Event, ...] = ()
    count: tuple[Count, ...] = ()
    scan: tuple[ScanJob, ...] = ()


class Bypass:
    """Flows judged clean by configuration: to a listed address or network, or to a listed
    server port (e.g. `203.0.113.7`, `198.51.100.0/24`, `443`)."""

    def __init__(self, entries: Iterable[str], where: str = "--clean") -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.ports: set[int] = set()
        for entry in entries:
            text = str(entry).strip()
            if text.isdigit():
                if not 0 < int(text) < 65536:
                    raise ConfigError(f"{where}: bypass port {text} is not in 1-65535")
                self.ports.add(int(text))
                continue
            try:
                self.networks.append(ipaddress.ip_network(text))
            except ValueError:
                raise ConfigError(f"{where}: bypass entry {text!r} is not an address, a "
                                  "network or a port") from None

    def __bool__(self) -> bool:
        return bool(self.networks or self.ports)

    def matches(self, flow: Any) -> bool:
        if flow.dport in self.ports:
            return True
        dst = ipaddress.ip_address(flow.dst)
        return any(dst in net for net in self.networks)


class Config:
    """What -c's suricata.yaml gives the inline engine: address/port variables, stream
    settings (`stream: {inline, reassembly: {depth}}`) and a `bypass` list."""

    def __init__(self, variables: Variables | None = None, flow: dict[str, Any] | None = None,
                 bypass: list[str] | None = None) -> None:
        self.variables = variables
        self.flow = flow or {}
        self.bypass = bypass or []

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"-c {path}: {e}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"-c {path}: not a mapping")
        try:
            variables = Variables.from_yaml(path) if "vars" in doc else None
        except RuleError as e:
            raise ConfigError(f"-c {path}: {e}") from None
        stream = doc.get("stream") or {}
        if not isinstance(stream, dict):
            raise ConfigError(f"-c {path}: stream: not a mapping")
        pairs = []
        if "inline" in stream:
            pairs.append(f"stream.inline={stream['inline']}")
        depth = (stream.get("reassembly") or {}).get("depth")
        if depth is not None:
            pairs.append(f"stream.reassembly.depth={depth}")
        bypass = doc.get("bypass") or []
        if not isinstance(bypass, list):
            raise ConfigError(f"-c {path}: bypass: want a list of addresses, networks, ports")
        try:
            flow = parse_sets(pairs)
        except UsageError as e:
            raise ConfigError(f"-c {path}: {e}") from None
        return cls(variables, flow, [str(b) for b in bypass])


def category_of(event: dict[str, Any]) -> dict[str, str] | None:
    """The controller's category rules carry `hyperwall_category`, `hyperwall_site` and
    `hyperwall_by` in their metadata; the report reads them as a block by category."""
    meta = event.get("alert", {}).get("metadata") or {}
    cat = meta.get("hyperwall_category")
    if not cat:
        return None
    return {"category": str(cat[0]), "site": str((meta.get("hyperwall_site") or ["?"])[0]),
            "by": str((meta.get("hyperwall_by") or ["?"])[0])}


class Ipsd:
    """The inline decisions (sans-IO): `decide(ip_packet, time) -> Decision`, which reads no
    clock, writes and sends nothing; `Inline` carries it out. Around it what the decisions
    are made with: the rules (reloaded), the clean list, the domains map, the counters."""

    def __init__(self, rule_paths: list[Path], logdir: Path, domains_file: Path | None,
                 flow_config: FlowConfig, clean: Iterable[str] | Bypass = (),
                 disabled_file: Path | None = None, *, variables: Variables | None = None,
                 bypass_after_depth: bool = True, engine: dict[str, Any] | None = None,
                 hold: FileHold | None = None) -> None:
        self.rule_paths = rule_paths
        # A scanner needs every file: tracking is on whatever the rules use.
        self.hold = hold
        if hold is not None:
            if flow_config.file_tracking is False:
                raise ConfigError("a scanner is configured but file-store.enabled=no: the "
                                  "scanner needs the files tracked")
            flow_config.file_tracking = True
        self.disabled_file = disabled_file
        self.variables = variables
        self.bypass = clean if isinstance(clean, Bypass) else Bypass(clean)
        self.domains_file = domains_file
        self.domains: dict[str, str] = {}
        self._domains_stamp: tuple[int, int] | None = None
        self.flows = FlowTable(flow_config)
        self.decoder = Decoder(DecoderConfig(checksums=False))
        rules = self.load_rules()
        if rules is None:
            raise ConfigError("no rule loaded: every rule given was refused (see above)")
        self.engine = Engine(rules, self.flows, EngineConfig(
            simulate_ips=True, stream_bypass=bypass_after_depth, **(engine or {})))
        self.engine.collect_files = self.flows.file_data = hold is not None
        settle_heap()
        self.rules_loaded = len(rules)
        self.load_domains()
        logdir.mkdir(parents=True, exist_ok=True)
        # Shared by every worker of the pool: whole lines, never interleaved.
        self.out = eve.AppendLog(logdir / "eve.json")
        self.writer = eve.EveWriter(self.out)
        self.started = time.time()
        self.count = 0      # packets decided; each one's pcap_cnt
        self.counts: Counter[Count] = Counter()
        self.reloads = 0
        self.reload_failures = 0
        self.reload_requested = False

    def load_rules(self) -> list[Any] | None:
        """The rules of every -S path, less the disabled ones. None when rules were there
        but not one loaded (a broken update must not leave the engine blind); an empty
        or missing folder is no rules, not an error."""
        paths = [p for p in self.rule_paths if p.exists()]
        ruleset = load_rules(paths, self.variables) if paths else None
        disabled = self.disabled_sids()
        rules = [r for r in ruleset.rules if r.sid not in disabled] if ruleset else []
        skipped = ruleset.skipped if ruleset else []
        for s in skipped[:SKIPPED_SHOWN]:
            log.warning("rule skipped: %s:%d sid %s: %s", s.file, s.line, s.sid, s.reason)
        if len(skipped) > SKIPPED_SHOWN:
            log.warning("... and %d more rules skipped", len(skipped) - SKIPPED_SHOWN)
        log.info("loaded %d rules from %s (%d skipped, %d disabled)", len(rules),
                 ", ".join(map(str, paths)) or "nothing", len(skipped), len(disabled))
        if ruleset is not None and not ruleset.rules and skipped:
            return None
        return rules

    def disabled_sids(self) -> set[int]:
        """Rules the provider turned off (the trust store's `disabled_sids`)."""
        if self.disabled_file is None or not self.disabled_file.exists():
            return set()
        try:
            return {int(s) for s in json.loads(self.disabled_file.read_text())
                    .get("disabled_sids", [])}
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.error("%s: %s; no rule disabled", self.disabled_file, e)
            return set()

    def load_domains(self) -> None:
        if self.domains_file is None:
            return
        try:
            st = self.domains_file.stat()
            self._domains_stamp = (st.st_mtime_ns, st.st_ino)
            data = json.loads(self.domains_file.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as e:
            log.error("%s: %s; keeping the previous map", self.domains_file, e)
            return
        if not isinstance(data, dict):
            log.error("%s: not a JSON object of address -> domain; keeping the previous map",
                      self.domains_file)
            return
        self.domains = {str(k): str(v) for k, v in data.items()}

    def domains_changed(self) -> bool:
        """Whether the --domains file is another one than the one read (the controller
        replaces it by rename, which changes the inode)."""
        if self.domains_file is None:
            return False
        try:
            st = self.domains_file.stat()
        except FileNotFoundError:
            return self._domains_stamp is not None
        return (st.st_mtime_ns, st.st_ino) != self._domains_stamp

    def reload(self) -> bool:
        """New rules and map; the flow table (and so every flow's state) stays. False when
        the new rules could not be used (the running ones stay)."""
        self.reload_requested = False
        self.load_domains()
        try:
            rules = self.load_rules()
        except Exception as e:   # a broken rule folder must not stop the datapath
            log.error("reload failed, keeping the running rules: %s", e)
            rules = None
        if rules is None:
            self.reload_failures += 1
            log.error("reload refused: no rule loaded; keeping the %d running rules",
                      self.rules_loaded)
            return False
        self.engine.replace_rules(rules)
        settle_heap()
        self.rules_loaded = len(rules)
        self.reloads += 1
        return True

    def decide(self, payload: bytes, now: float, handle: Any = None) -> Decision:
        """The decision on one IP packet that arrived at `now` (seconds since the epoch);
        `handle` is how the shell names the packet if it is held (its NFQUEUE id)."""
        self.count += 1
        pkt = self.decoder.decode(LINKTYPE_RAW, now, self.count, payload)
        if pkt is None or not pkt.src:
            # not an IP packet we can read: it does not pass
            return Decision(Verdict.DROP, count=("undecodable",))
        if pkt.no_l4:
            # An IP packet without a usable L4 header (a lone fragment given back for its
            # anomaly, a broken TCP header): its anomaly is logged, then it is dropped, as
            # every fragment of an incomplete datagram is; it has no flow to judge it by.
            self.engine.judge(pkt)
            return Decision(Verdict.DROP, eve=self._events(), count=("undecodable",))
        judged = self.engine.judge(pkt)
        files = self.engine.take_files() if self.hold is not None else []
        verdict, events = judged.verdict, self._events()
        if self.hold is not None and judged.flow is not None and verdict in (
                Verdict.ACCEPT, Verdict.BYPASS):
            jobs = self.hold.hold(handle, judged.flow, pkt, payload, files, now)
            if jobs is not None:
                return Decision(None, eve=events, scan=tuple(jobs),
                                count=("files_held",) if files else ())
        if verdict is Verdict.REJECT:
            # The engine rejects a flow's matching packet only; the rest is dropped, so the
            # ends are answered once.
            return Decision(verdict, tuple(reject.answers(pkt, payload)), events,
                            ("rejected_flows",))
        if verdict is Verdict.DROP:
            return Decision(verdict, eve=events)
        if judged.flow is not None and self.bypass and self.bypass.matches(judged.flow):
            return Decision(Verdict.BYPASS, eve=events, count=("bypassed_clean",))
        if verdict is Verdict.BYPASS:   # past the depth (the engine's stream_bypass)
            return Decision(verdict, eve=events, count=("bypassed_depth",))
        return Decision(verdict, eve=events)

    def released(self, release: Release) -> Decision:
        """A hold's outcome as the decision for each of its packets (events annotated)."""
        blocked = release.verdict is not Verdict.ACCEPT
        return Decision(release.verdict, release.send,
                        tuple(self.annotate(e) for e in release.events),
                        ("files_blocked",) if blocked else ())

    def _events(self) -> tuple[eve.Event, ...]:
        return tuple(self.annotate(e) for e in self.engine.take_events())

    def annotate(self, event: eve.Event) -> eve.Event:
        """The event with its `hyperwall` block: the guest it concerns, for the controller's
        category rules the category."""
        hw: dict[str, str] = {}
        # a file concerns the domain it was going to first (eve.fileinfo: dest_ip)
        ends = ("dest_ip", "src_ip") if event.get("event_type") == "fileinfo" \
            else ("src_ip", "dest_ip")
        for end in ends:
            guest = self.domains.get(str(event.get(end)))
            if guest:
                # `guest` is what sys-sec's readers (evelog, the report) have always read.
                hw["domain"] = hw["guest"] = guest
                hw["guest_ip"] = str(event[end])
                break
        if event.get("event_type") == "alert":
            hw.update(category_of(event) or {})
        if hw:
            event["hyperwall"] = hw
        return event

    def write(self, event: eve.Event) -> None:
        self.writer.write(event)

    def stats(self) -> dict[str, Any]:
        """Live counters: the engine's, and this process's inline decisions."""
        c = self.engine.counters
        return {"pid": os.getpid(), "uptime": round(time.time() - self.started, 3),
                "rules_loaded": self.rules_loaded, "reloads": self.reloads,
                "reload_failures": self.reload_failures, "flows_active": len(self.flows),
                "packets": c.pkts, "bytes": c.bytes, "alerts": c.alerts, "drops": c.drops,
                **{name: self.counts[name] for name in get_args(Count)}}

    def stats_event(self, inline: dict[str, int] | None = None) -> dict[str, Any]:
        """Suricata's `stats` record, with its `ips` block (accepted/blocked/...)."""
        event = self.engine.stats_event({"active": len(self.flows)})
        c = self.counts
        event["stats"]["ips"] = {"accepted": (inline or {}).get("accepted", 0),
                                 "blocked": self.engine.counters.drops,
                                 "rejected": c["rejected_flows"],
                                 "bypassed": c["bypassed_depth"] + c["bypassed_clean"]}
        return event


class Inline:
    """The shell around `Ipsd.decide`, called by the NFQUEUE loop (InlineQueue) per packet:
    gives the packet the time, carries out its Decision (EVE written, counters bumped, a
    reject's answers queued for `take_outbox`, sent once the batch is answered) and hands
    back the verdict for NFQUEUE."""

    def __init__(self, ipsd: Ipsd, clock: Callable[[], float] = time.time,
                 scans: Scans | None = None,
                 current: Callable[[], Any] = lambda: None) -> None:
        self.ipsd = ipsd
        self.clock = clock
        self.scans = scans
        self.current = current          # the handle (NFQUEUE id) of the packet decided
        self.outbox: list[bytes] = []
        self.later: list[tuple[Any, Verdict]] = []   # held packets' verdicts, in order

    def __call__(self, payload: bytes) -> Verdict | None:
        decision = self.ipsd.decide(payload, self.clock(), self.current())
        self._carry(decision)
        if decision.scan:
            assert self.scans is not None, "a hold without a scanner"
            for job in decision.scan:
                self.scans.submit(job)
        hold = self.ipsd.hold
        if hold is not None and decision.verdict is None:
            for release in hold.ready():
                self._release(release)
        return decision.verdict

    def settle(self) -> None:
        """Scanners' answers in, holds past their deadline out: their verdicts go to
        `take_later`."""
        hold = self.ipsd.hold
        if hold is None:
            return
        for token, index, result in self.scans.take() if self.scans else []:
            release = hold.result(token, index, result)
            if release is not None:
                self._release(release)
        for release in hold.expire(self.clock()):
            self._release(release)

    def _release(self, release: Release) -> None:
        self._carry(self.ipsd.released(release))
        self.later.extend((h, release.verdict) for h in release.handles)

    def _carry(self, decision: Decision) -> None:
        for event in decision.eve:
            self.ipsd.write(event)
        self.ipsd.counts.update(decision.count)
        self.outbox.extend(decision.send)

    def take_outbox(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def take_later(self) -> list[tuple[Any, Verdict]]:
        out, self.later = self.later, []
        return out


class Scans:
    """The scanner in worker threads: `submit` a ScanJob, `take` the answers that came
    back (a readable `fileno()` says some did, for select). A scanner that raises is an
    ERROR answer; one that hangs is the hold's deadline's business, not this class's."""

    def __init__(self, scanner: FileScanner, workers: int = 2) -> None:
        self.scanner = scanner
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="hyperwall-scan")
        self.done: queue_mod.SimpleQueue[tuple[int, int, ScanResult]] = queue_mod.SimpleQueue()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)

    def fileno(self) -> int:
        return self._r

    def submit(self, job: ScanJob) -> None:
        self.pool.submit(self._run, job)

    def _run(self, job: ScanJob) -> None:
        try:
            result = self.scanner.scan(job.data, job.name)
        except Exception as e:   # a scanner's bug must not leave the packet held
            log.exception("scanner failed on %s", job.name)
            result = ScanResult(Outcome.ERROR, error=f"{job.name}: scanner failed: {e}")
        self.done.put((job.token, job.index, result))
        try:
            os.write(self._w, b"x")
        except OSError:
            pass   # closed at shutdown

    def take(self) -> list[tuple[int, int, ScanResult]]:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        out = []
        while True:
            try:
                out.append(self.done.get_nowait())
            except queue_mod.Empty:
                return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        os.close(self._r)
        os.close(self._w)


class StatsSocket:
    """--socket: every connection gets one JSON line of counters, then is closed."""

    def __init__(self, path: Path, counters: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self.counters = counters
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self.sock.listen(8)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def answer(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(1.0)
            try:
                conn.sendall(json.dumps(self.counters()).encode() + b"\n")
            except OSError:
                pass     # the reader went away: nothing to do

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def read_stats(path: Path, timeout: float = 2.0) -> dict[str, Any]:
    """A running ipsd's counters through its --socket (OSError when it is not there)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        return dict(json.loads(data))
    except ValueError as e:
        raise OSError(f"{path}: not ipsd's counters: {e}") from None


class _Sender:
    """Sends what reject answers (raw IPv4, headers included) from sys-sec."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None

    def send(self, packets: list[bytes]) -> None:
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            for p in packets:
                self.sock.sendto(p, (socket.inet_ntoa(p[16:20]), 0))
        except OSError as e:   # the drop stands; only the courtesy answer is lost
            log.warning("reject: could not send the answer: %s", e)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hyperwall-ipsd", description=__doc__.splitlines()[0])
    p.add_argument("--queue", type=int, default=0, help="NFQUEUE number (default 0)")
    p.add_argument("-S", dest="rules", type=Path, action="append", default=[],
                   help="rule file or folder (repeatable; missing ones are skipped)")
    p.add_argument("-c", dest="config", type=Path,
                   help="suricata.yaml: vars, stream.inline, stream.reassembly.depth, and a "
                   "`bypass` list of addresses, networks and server ports")
    p.add_argument("-l", dest="logdir", type=Path, required=True, help="folder for eve.json")
    p.add_argument("--socket", type=Path, help="Unix socket answering live counters (JSON)")
    p.add_argument("--domains", type=Path, help="JSON map guest address -> domain name")
    p.add_argument("--pidfile", type=Path)
    p.add_argument("--disabled", type=Path, metavar="JSON",
                   help="a file whose `disabled_sids` are not loaded (the provider's)")
    p.add_argument("--clean", action="append", default=[], metavar="CIDR|PORT",
                   help="flows to these destinations bypass the engine (repeatable)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help=SET_HELP)
    p.add_argument("--bypass-after-depth", action=argparse.BooleanOptionalAction,
                   default=True, help="hand a TCP flow to the kernel once a direction is "
                   "past the depth (default: yes; --set stream.bypass=no as well)")
    p.add_argument("--clamd-socket", type=Path, metavar="PATH",
                   help="scan every file in flight with clamd on this socket")
    p.add_argument("--yara-dir", type=Path, metavar="DIR",
                   help="scan every file in flight with the YARA rules of this folder")
    p.add_argument("--scan-timeout", type=float, default=SCAN_TIMEOUT, metavar="S",
                   help=f"seconds the packet completing a file waits for the verdict "
                   f"(default {SCAN_TIMEOUT:g})")
    p.add_argument("--scan-fail", choices=FAIL_MODES, default="closed",
                   help="a file not scanned (scanner down, hung, too large): block the "
                   "flow (closed, the default) or let it pass with an alert (open)")
    p.add_argument("--stats-interval", type=float, default=STATS_INTERVAL, metavar="S",
                   help=f"seconds between EVE stats records (default {STATS_INTERVAL:g})")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> Ipsd:
    """The engine the command line describes; ConfigError names what is wrong."""
    cfg = Config.load(args.config) if args.config else Config()
    try:
        sets = parse_settings(args.sets)
        flow_settings = {"inline": True, **cfg.flow, **sets.flow}
    except UsageError as e:
        raise ConfigError(str(e)) from None
    note = ignored_note(sets)
    if note:
        log.warning("%s", note)
    bypass = Bypass([*cfg.bypass, *args.clean],
                    f"-c {args.config} / --clean" if args.config else "--clean")
    hold = None
    if args.clamd_socket is not None or args.yara_dir is not None:
        try:
            hold = FileHold(args.scan_timeout, args.scan_fail)
        except ValueError as e:
            raise ConfigError(f"--{e}") from None
    return Ipsd(args.rules, args.logdir, args.domains, FlowConfig(**flow_settings), bypass,
                args.disabled, variables=cfg.variables,
                bypass_after_depth=sets.engine.pop("stream_bypass", args.bypass_after_depth),
                engine=sets.engine, hold=hold)


def scanner(args: argparse.Namespace) -> FileScanner | None:
    """The scanner --clamd-socket / --yara-dir describe (YARA's rules compiled now)."""
    if args.clamd_socket is None and args.yara_dir is None:
        return None
    from domains.syssec.antivirus import YaraRulesError, scanner_from
    try:
        # clamd's own timeout is the hold's: a worker stuck on a hung clamd past it only
        # keeps the next files from being scanned in time
        return scanner_from(args.clamd_socket, args.yara_dir, timeout=args.scan_timeout)
    except (YaraRulesError, OSError) as e:
        raise ConfigError(f"--yara-dir {args.yara_dir}: {e}") from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging("ipsd")
    try:
        file_scanner = scanner(args)
        ipsd = build(args)
    except ConfigError as e:
        sys.exit(f"hyperwall-ipsd: {e}")
    scans = Scans(file_scanner) if file_scanner is not None else None
    inline = Inline(ipsd, scans=scans)
    queue = InlineQueue(args.queue, inline)
    inline.current = lambda: queue.current_id
    try:
        queue.open()
    except OSError as e:
        sys.exit(f"hyperwall-ipsd: {e}")
    assert queue.sock is not None

    def counters() -> dict[str, Any]:
        return {**ipsd.stats(), "queue": vars(queue.stats).copy()}
    stats_socket = StatsSocket(args.socket, counters) if args.socket else None
    sender = _Sender()
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, lambda *_: setattr(ipsd, "reload_requested", True))
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    log.info("inline on NFQUEUE %d", args.queue)
    print("ready", flush=True)
    readers: list[Any] = [queue.sock] + ([stats_socket] if stats_socket else []) + \
        ([scans] if scans else [])
    next_stats = time.monotonic() + args.stats_interval
    next_domains = time.monotonic() + DOMAINS_CHECK
    try:
        while not stop:
            wait = 0.2
            deadline = ipsd.hold.next_deadline() if ipsd.hold is not None else None
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.time()))
            try:
                ready, _, _ = select.select(readers, [], [], wait)
            except InterruptedError:
                ready = []
            if queue.sock in ready:
                queue.service()
            if ipsd.hold is not None:
                inline.settle()
                later = inline.take_later()
                if later:
                    queue.answer_later(later)
            if inline.outbox:
                sender.send(inline.take_outbox())
            if stats_socket is not None and stats_socket in ready:
                stats_socket.answer()
            if ipsd.reload_requested:
                ipsd.reload()
            now = time.monotonic()
            if now > next_domains:
                next_domains = now + DOMAINS_CHECK
                if ipsd.domains_changed():
                    ipsd.load_domains()
            if now > next_stats:
                next_stats = now + args.stats_interval
                ipsd.write(ipsd.stats_event(vars(queue.stats)))
    finally:
        ipsd.write(ipsd.stats_event(vars(queue.stats)))
        queue.close()
        if scans is not None:
            scans.close()
        if stats_socket is not None:
            stats_socket.close()
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
