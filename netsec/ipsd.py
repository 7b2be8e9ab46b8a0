"""`hyperwall-ipsd`: the engine inline, on the NFQUEUE sys-sec's firewall sends forwarded
traffic to. Runs inside sys-sec.

Every queued packet (an IP packet: NFQUEUE gives no link layer) goes through the same
decoder, flow table and detector as `hyperwall-ids -r`, in IPS mode: drop and reject rules
drop the packet and the rest of its flow before any guest sees it. A TCP flow whose two
directions are both past the reassembly depth is handed back to the kernel (connmark
bypass), so bulk transfers stop costing the engine. EVE goes to LOGDIR/eve.json, each
record naming the guest it concerns (`hyperwall.guest`, from the --domains map that
sys-sec's controller keeps) and, for the controller's category rules, the category.

SIGHUP reloads the rules and the domains map, keeping every flow's state; SIGTERM stops.
While this process is down nothing is forwarded (the firewall queues without bypass).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dom0.logsetup import setup_logging
from netsec import eve
from netsec.decode import Decoder, DecoderConfig
from netsec.detect.detector import Detector
from netsec.engine import Engine, EngineConfig
from netsec.engine import Verdict as EngineVerdict
from netsec.flow import FlowConfig, FlowTable
from netsec.inline import InlineQueue, Verdict
from netsec.rules import load_rules

log = logging.getLogger("hyperwall.ipsd")
LINKTYPE_RAW = 101
STATS_INTERVAL = 30.0


class _Tracked:
    """The flow table, remembering the flow of the last packet (for the bypass decision)."""

    def __init__(self, table: FlowTable) -> None:
        self.table = table
        self.last: Any = None

    def process(self, pkt: Any) -> list[Any]:
        inspections = self.table.process(pkt)
        self.last = inspections[0].flow if inspections else None
        return inspections

    def drain_events(self) -> list[Any]:
        return self.table.drain_events()

    def flush(self) -> list[Any]:
        return self.table.flush()


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
    def __init__(self, rule_paths: list[Path], logdir: Path, domains_file: Path | None,
                 flow_config: FlowConfig, clean: Sequence[str] = (),
                 disabled_file: Path | None = None) -> None:
        self.rule_paths = rule_paths
        self.disabled_file = disabled_file
        # Destinations the owner judged clean (e.g. a backup server): their flows are
        # handed to the kernel from the first packet.
        self.clean = [ipaddress.ip_network(c) for c in clean]
        self.domains_file = domains_file
        self.domains: dict[str, str] = {}
        self.flows = _Tracked(FlowTable(flow_config))
        self.decoder = Decoder(DecoderConfig(checksums=False))
        self.engine = Engine(self.load_rules(), self.flows, EngineConfig(simulate_ips=True))
        self.load_domains()
        logdir.mkdir(parents=True, exist_ok=True)
        self.out = open(logdir / "eve.json", "a", buffering=1)  # noqa: SIM115 - process-long
        self.writer = eve.EveWriter(self.out)
        self.count = 0
        self.bypassed = 0
        self.reload_requested = False

    def load_rules(self) -> list[Any]:
        paths = [p for p in self.rule_paths if p.exists()]
        ruleset = load_rules(paths) if paths else None
        disabled = self.disabled_sids()
        rules = [r for r in ruleset.rules if r.sid not in disabled] if ruleset else []
        log.info("loaded %d rules from %s (%d disabled)", len(rules),
                 ", ".join(map(str, paths)) or "nothing", len(disabled))
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
            data = json.loads(self.domains_file.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as e:
            log.error("%s: %s; keeping the previous map", self.domains_file, e)
            return
        self.domains = {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def reload(self) -> None:
        """New rules and map; the flow table (and so every flow's state) stays."""
        self.reload_requested = False
        try:
            rules = self.load_rules()
        except Exception as e:   # a broken rule folder must not stop the datapath
            log.error("reload failed, keeping the running rules: %s", e)
            return
        self.engine.detector = Detector(rules, prefilter=self.engine.config.prefilter)
        self.load_domains()

    def decide(self, payload: bytes) -> Verdict:
        self.count += 1
        pkt = self.decoder.decode(LINKTYPE_RAW, time.time(), self.count, payload)
        if pkt is None or not pkt.src:
            return Verdict.DROP      # not an IP packet we can read: it does not pass
        verdict = self.engine.process(pkt)
        for event in self.engine.take_events():
            self.write(event)
        if verdict in (EngineVerdict.DROP, EngineVerdict.REJECT):
            return Verdict.DROP
        if self._bypass(self.flows.last):
            self.bypassed += 1
            return Verdict.BYPASS
        return Verdict.ACCEPT

    def _bypass(self, flow: Any) -> bool:
        if flow is None or flow.detect_state.get("dropped"):
            return False
        if self.clean and any(ipaddress.ip_address(flow.dst) in net for net in self.clean):
            return True
        streams = flow.streams
        # Past the depth both ways: the engine would see nothing more of this flow.
        return streams[0] is not None and streams[1] is not None and \
            streams[0].past_depth and streams[1].past_depth

    def write(self, event: dict[str, Any]) -> None:
        hw: dict[str, str] = {}
        for end in ("src_ip", "dest_ip"):
            guest = self.domains.get(str(event.get(end)))
            if guest:
                hw["guest"], hw["guest_ip"] = guest, str(event[end])
                break
        if event.get("event_type") == "alert":
            hw.update(category_of(event) or {})
        if hw:
            event["hyperwall"] = hw
        self.writer.write(event)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hyperwall-ipsd", description=__doc__.splitlines()[0])
    p.add_argument("--queue", type=int, default=0, help="NFQUEUE number (default 0)")
    p.add_argument("-S", dest="rules", type=Path, action="append", default=[],
                   help="rule file or folder (repeatable; missing ones are skipped)")
    p.add_argument("-l", dest="logdir", type=Path, required=True, help="folder for eve.json")
    p.add_argument("--domains", type=Path, help="JSON map guest address -> domain name")
    p.add_argument("--pidfile", type=Path)
    p.add_argument("--disabled", type=Path, metavar="JSON",
                   help="a file whose `disabled_sids` are not loaded (the provider's)")
    p.add_argument("--clean", action="append", default=[], metavar="CIDR",
                   help="flows to these destinations bypass the engine (repeatable)")
    p.add_argument("--depth", type=int, default=1 << 20,
                   help="stream.reassembly.depth: past it in both directions a flow is "
                   "bypassed (default 1 MiB)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging("ipsd")
    try:
        ipsd = Ipsd(args.rules, args.logdir, args.domains,
                    FlowConfig(inline=True, reassembly_depth=args.depth), args.clean,
                    args.disabled)
    except ValueError as e:   # a bad --clean network, or rules that do not load
        sys.exit(f"hyperwall-ipsd: {e}")
    queue = InlineQueue(args.queue, ipsd.decide)
    try:
        queue.open()
    except OSError as e:
        sys.exit(f"hyperwall-ipsd: {e}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: setattr(ipsd, "reload_requested", True))
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    log.info("inline on NFQUEUE %d", args.queue)
    print("ready", flush=True)
    next_stats = time.monotonic() + STATS_INTERVAL
    try:
        while not stop.is_set():
            queue.serve_once(0.2)
            if ipsd.reload_requested:
                ipsd.reload()
            if time.monotonic() > next_stats:
                next_stats = time.monotonic() + STATS_INTERVAL
                ipsd.write(ipsd.engine.stats_event())
    finally:
        queue.close()
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
