"""`hyperwall-ids`: the engine offline on a pcap, with Suricata's command line.

    hyperwall-ids -r capture.pcap -S rules/ -l logs/ [-k none|all] [--simulate-ips]
                  [--set stream.midstream=true] [-c suricata.yaml] [--json]
    hyperwall-ids --check-rules -S rules/ [--json]

Writes LOGDIR/eve.json (one JSON object per line) and a summary on stderr (or, with
--json, the summary as JSON on stdout). Exit status: 0 done, 1 bad input (a missing
file, a bad option value), 2 usage.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsec import eve
from netsec.app.htp import HtpUnavailable, parser_class
from netsec.engine import EXCEPTION_POLICIES, Engine, EngineConfig, settle_heap
from netsec.flow.config import FlowConfig

_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20,
          "gb": 1 << 30, "gib": 1 << 30}
_TRUE, _FALSE = {"yes", "true", "on", "1"}, {"no", "false", "off", "0"}


class UsageError(Exception):
    """Input a person must fix; the message says what and where."""


def parse_size(text: str, name: str) -> int:
    """Suricata's size forms: `4096`, `64kb`, `1mb`, `1gb` (binary units)."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"--set {name}={text}: not a size (e.g. 1048576, 64kb, 1mb)")
    unit = m.group(2).lower() if m.group(2) else None
    return int(m.group(1)) * _UNITS[unit]


def parse_bool(text: str, name: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE | _FALSE:
        return low in _TRUE
    raise UsageError(f"--set {name}={text}: want yes/no, true/false or on/off")


def parse_file_size(text: str, name: str) -> int:
    size = parse_size(text, name)
    if size <= 0:   # Suricata's 0 is "unlimited": a file here is held in memory, bounded
        raise UsageError(f"--set {name}={text}: want a size above 0 (a file is kept in "
                         "memory up to it)")
    return size


def parse_http_parser(text: str, name: str) -> str:
    try:
        parser_class(text)
    except ValueError:
        raise UsageError(f"--set {name}={text}: want libhtp or python") from None
    except HtpUnavailable as e:
        raise UsageError(f"--set {name}={text}: {e}") from None
    return text


def parse_exception_policy(text: str, name: str) -> str:
    value = text.strip().lower()
    if value not in EXCEPTION_POLICIES:
        raise UsageError(f"--set {name}={text}: want one of {', '.join(EXCEPTION_POLICIES)}")
    return value


def parse_seconds(text: str, name: str) -> int:
    if not text.strip().isdigit():
        raise UsageError(f"--set {name}={text}: want a whole number of seconds")
    return int(text)


_LIBHTP = "app-layer.protocols.http.libhtp.default-config."
# Settings this engine applies: Suricata's name -> (FlowConfig field, value parser).
SETTINGS = {
    "stream.midstream": ("midstream", parse_bool),
    "stream.inline": ("inline", parse_bool),
    "stream.reassembly.depth": ("reassembly_depth", parse_size),
    "app-layer.protocols.http.parser": ("http_parser", parse_http_parser),
    _LIBHTP + "request-body-limit": ("request_body_limit", parse_size),
    _LIBHTP + "response-body-limit": ("response_body_limit", parse_size),
    _LIBHTP + "meta-field-limit": ("http_field_limit", parse_size),
    # files (netsec.files): on, off, or (unset) when a file keyword or a scanner asks
    "file-store.enabled": ("file_tracking", parse_bool),
    "file-store.stream-depth": ("file_max_size", parse_file_size),
}
# ... and those of the engine: Suricata's name -> (EngineConfig field, value parser).
ENGINE_SETTINGS = {
    "exception-policy": ("exception_policy", parse_exception_policy),
    "stream.bypass": ("stream_bypass", parse_bool),
}
# flow-timeouts.<tcp|udp|icmp|default>.<new|established|closed>: FlowConfig.timeouts
_TIMEOUT = re.compile(r"^flow-timeouts\.(tcp|udp|icmp|default)\.(new|established|closed)$")


@dataclass(slots=True)
class Settings:
    """`--set` pairs, sorted: FlowConfig and EngineConfig fields, and the names of Suricata
    settings this engine does not apply (accepted, as Suricata accepts any --set)."""

    flow: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def parse_settings(pairs: list[str]) -> Settings:
    """Every `name=value`; a known name with a bad value, or a pair without `=`, is a
    UsageError; an unknown name is listed once in `ignored`."""
    out = Settings()
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--set {pair}: want name=value")
        if name in SETTINGS:
            key, parse = SETTINGS[name]
            out.flow[key] = parse(value, name)
        elif name in ENGINE_SETTINGS:
            key, parse = ENGINE_SETTINGS[name]
            out.engine[key] = parse(value, name)
        elif m := _TIMEOUT.match(name):
            timeouts = out.flow.setdefault("timeouts", FlowConfig().timeouts)
            timeouts[m.group(1)][m.group(2)] = parse_seconds(value, name)
        elif name not in out.ignored:
            out.ignored.append(name)
    return out


SET_HELP = ("override a Suricata setting; applied: "
            f"{', '.join([*SETTINGS, *ENGINE_SETTINGS, 'flow-timeouts.*'])}; "
            "others are accepted and listed once as ignored")


def ignored_note(settings: Settings) -> str | None:
    """The one line naming the `--set` settings not applied, if any."""
    if not settings.ignored:
        return None
    return f"--set: ignored, not applied by this engine: {', '.join(settings.ignored)}"


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """The FlowConfig fields of `--set` pairs (see parse_settings)."""
    return parse_settings(pairs).flow


def existing(paths: list[Path]) -> list[Path]:
    """-S arguments, checked: each must be a rule file or a folder of *.rules."""
    for p in paths:
        if not p.exists():
            raise UsageError(f"-S {p}: no such rule file or folder")
    return paths


def classification_file(args: argparse.Namespace) -> Path | None:
    """--classification, else a classification.config beside the rules (as ET ships it)."""
    if args.classification:
        if not args.classification.is_file():
            raise UsageError(f"--classification {args.classification}: no such file")
        return args.classification
    for p in args.rules:
        folder = p if p.is_dir() else p.parent
        if (folder / "classification.config").is_file():
            return folder / "classification.config"
    return None


def categories(path: Path) -> dict[str, str]:
    from netsec.rules.classification import load_classification

    return {name: c.description for name, c in load_classification(path).items()}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hyperwall-ids", description=__doc__.split("\n")[0])
    ap.add_argument("-r", dest="pcap", type=Path, help="pcap or pcapng file to read")
    ap.add_argument("-S", dest="rules", type=Path, action="append", default=[],
                    help="rule file or folder of *.rules (repeatable)")
    ap.add_argument("-l", dest="logdir", type=Path, default=Path("."),
                    help="folder for eve.json (default: the current folder)")
    ap.add_argument("-k", dest="checksums", choices=("none", "all"), default="all",
                    help="checksum validation (default: all)")
    ap.add_argument("-c", dest="config", type=Path, help="suricata.yaml for address/port vars")
    ap.add_argument("--classification", type=Path, help="classification.config")
    ap.add_argument("--simulate-ips", action="store_true",
                    help="drop/reject rules block packets and their flows")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                    help=SET_HELP)
    ap.add_argument("--prefilter", choices=("hyperscan", "python"),
                    help="force a prefilter backend (default: Hyperscan when installed)")
    ap.add_argument("--check-rules", action="store_true",
                    help="load the rules, report loaded/skipped per file, and exit")
    ap.add_argument("--json", action="store_true", help="print the summary/report as JSON")
    return ap


def load(args: argparse.Namespace) -> Any:
    from netsec.rules import load_rules
    from netsec.rules.variables import Variables

    if not args.rules:
        raise UsageError("no rules: give -S FILE or -S FOLDER")
    variables = None
    if args.config:
        if not args.config.is_file():
            raise UsageError(f"-c {args.config}: no such file")
        variables = Variables.from_yaml(args.config)
    return load_rules(existing(args.rules), variables, classification_file(args))


def check_rules(args: argparse.Namespace) -> int:
    from netsec.rules import check

    ruleset = load(args)
    out = check.format_json(ruleset) if args.json else check.format_text(ruleset, verbose=True)
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from netsec.flow import FlowTable
    from netsec.pcap import read_packets

    if args.pcap is None:
        raise UsageError("no input: give -r FILE (a pcap or pcapng)")
    if not args.pcap.is_file():
        raise UsageError(f"-r {args.pcap}: no such file")
    settings = parse_settings(args.sets)
    note = ignored_note(settings)
    if note:
        print(f"hyperwall-ids: {note}", file=sys.stderr)
    flow_cfg = FlowConfig(**settings.flow, checksums=args.checksums == "all")
    t0 = time.monotonic()
    ruleset = load(args)
    flows = FlowTable(flow_cfg)
    cls = classification_file(args)
    engine = Engine(ruleset.rules, flows, EngineConfig(
        simulate_ips=args.simulate_ips, prefilter=args.prefilter,
        categories=categories(cls) if cls else {}, **settings.engine))
    settle_heap()
    loaded = time.monotonic()
    args.logdir.mkdir(parents=True, exist_ok=True)
    eve_path = args.logdir / "eve.json"
    with open(eve_path, "w") as out:
        writer = eve.EveWriter(out)
        for pkt in _progress(read_packets(args.pcap)):
            engine.process(pkt)
            for ev in engine.take_events():
                writer.write(ev)
        for ev in engine.finish():
            writer.write(ev)
    done = time.monotonic()
    c = engine.counters
    summary = {"pcap": str(args.pcap), "eve": str(eve_path), "rules": len(ruleset.rules),
               "packets": c.pkts, "bytes": c.bytes, "alerts": c.alerts, "drops": c.drops,
               "prefilter": engine.detector.backend, "load_seconds": round(loaded - t0, 3),
               "run_seconds": round(done - loaded, 3),
               "pps": round(c.pkts / (done - loaded)) if done > loaded else 0}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"hyperwall-ids: {c.pkts} packets, {c.alerts} alerts, {c.drops} drops, "
              f"{len(ruleset.rules)} rules ({summary['prefilter']}), "
              f"load {summary['load_seconds']} s, run {summary['run_seconds']} s "
              f"({summary['pps']} pkt/s) -> {eve_path}", file=sys.stderr)
    return 0


def _progress(packets: Iterator[Any], every: int = 100_000) -> Iterator[Any]:
    """Long pcaps say how far they are on stderr (only when stderr is a terminal)."""
    tty = sys.stderr.isatty()
    for n, pkt in enumerate(packets, 1):
        if tty and n % every == 0:
            print(f"\r{n} packets", end="", file=sys.stderr, flush=True)
        yield pkt
    if tty:
        print("\r", end="", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return check_rules(args) if args.check_rules else run(args)
    except (UsageError, OSError) as e:
        print(f"hyperwall-ids: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # RuleError and decoder errors name what and where
        print(f"hyperwall-ids: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
