"""Staging a provider's rules before they go live (the core of domains/syssec/updates.py).

A staged set is loaded from the files a verified bundle ships, with the loader the engine
itself uses, and must pass a self-test before it is handed over:

- the built-in case: a plain HTTP exchange that no sane rule set drops;
- every capture the bundle carries as `selftest/<name>.pcap`: each sid its policy expects
  (`[selftest]`, `"<name>.pcap" = [sid, ...]`) must alert; a capture that expects nothing
  is benign, and no packet of it may be dropped.
"""
from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsec.decode import Decoder, DecoderConfig
from netsec.decode.checksum import ones_complement_sum, pseudo_header
from netsec.engine import Engine, EngineConfig, Verdict
from netsec.flow import FlowConfig, FlowTable
from netsec.pcap import PcapError, read_frames
from netsec.rules import Rule, Variables, load_rules
from netsec.rules.loader import Skipped

LINKTYPE_RAW = 101
SELFTEST_DIR = "selftest"
SKIPPED_NAMED = 3      # skipped rules named in a refusal; the rest are counted


class StagingError(ValueError):
    """A staged rule set refused; the message says what failed and where."""


@dataclass(frozen=True)
class StagedSet:
    version: int
    rules: tuple[Rule, ...]
    skipped: tuple[Skipped, ...] = ()
    disabled: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Case:
    """Self-test traffic: (linktype, frame) in order, and the sids it must raise (none:
    benign traffic, which nothing may drop)."""
    name: str
    frames: tuple[tuple[int, bytes], ...]
    expect: frozenset[int] = field(default_factory=frozenset)


def build(version: int, rules_dir: Path, *, disabled: frozenset[int] = frozenset(),
          variables: Variables | None = None) -> StagedSet:
    """The rules of `rules_dir` as the engine would load them, less the disabled sids.
    Refused when the load fails outright or not one rule of the bundle loads."""
    try:
        ruleset = load_rules([rules_dir], variables)
    except Exception as e:  # noqa: BLE001 - whatever breaks the loader refuses the bundle
        raise StagingError(f"the bundle's rules did not load: {type(e).__name__}: {e}") \
            from None
    skipped = tuple(ruleset.skipped)
    if not ruleset.rules:
        named = "; ".join(f"{Path(s.file).name}:{s.line}: {s.reason}"
                          for s in skipped[:SKIPPED_NAMED])
        more = f" (and {len(skipped) - SKIPPED_NAMED} more)" if len(skipped) > SKIPPED_NAMED \
            else ""
        raise StagingError(f"no rule of the bundle loads ({len(skipped)} skipped"
                           f"{': ' + named if named else ''}{more})")
    rules = tuple(r for r in ruleset.rules if r.sid not in disabled)
    return StagedSet(version, rules, skipped, disabled)


def _ipv4_tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"") -> bytes:
    """One IPv4/TCP packet with valid checksums (the self-test's traffic is made here,
    not read from disk, so no bundle can change it)."""
    saddr = bytes(int(x) for x in src.split("."))
    daddr = bytes(int(x) for x in dst.split("."))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    csum = 0xFFFF - ones_complement_sum(
        pseudo_header(saddr, daddr, 6, len(tcp) + len(payload)) + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64,
                     6, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", 0xFFFF - ones_complement_sum(ip)) + ip[12:]
    return ip + tcp + payload


def builtin_case() -> Case:
    """A guest fetching a page over plain HTTP: handshake, request, response."""
    guest, server, gport = "10.137.0.2", "203.0.113.10", 43210
    req = b"GET / HTTP/1.1\r\nHost: selftest.example\r\nUser-Agent: hyperwall\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
    syn, ack, psh = 0x02, 0x10, 0x08
    c = lambda *a, **kw: _ipv4_tcp(guest, server, gport, 80, *a, **kw)  # noqa: E731
    s = lambda *a, **kw: _ipv4_tcp(server, guest, 80, gport, *a, **kw)  # noqa: E731
    packets = (c(1, 0, syn), s(100, 2, syn | ack), c(2, 101, ack),
               c(2, 101, psh | ack, req), s(101, 2 + len(req), psh | ack, resp),
               c(2 + len(req), 101 + len(resp), ack))
    return Case("built-in benign HTTP exchange", tuple((LINKTYPE_RAW, p) for p in packets))


def bundle_cases(folder: Path, policy: Mapping[str, Any]) -> list[Case]:
    """The bundle's own captures under `folder`/selftest, with the sids its policy expects."""
    expected = policy.get("selftest", {})
    if not isinstance(expected, dict):
        raise StagingError("policy.toml: [selftest] must map capture names to lists of sids")
    captures = {p.name: p for p in sorted((folder / SELFTEST_DIR).glob("*.pcap"))}
    cases = []
    for name, sids in expected.items():
        if name not in captures:
            raise StagingError(f"policy.toml: [selftest] names {name!r}, which the bundle "
                               f"does not carry under {SELFTEST_DIR}/")
        if not isinstance(sids, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sids):
            raise StagingError(f"policy.toml: [selftest] {name!r} must be a list of sids")
    for name, path in captures.items():
        try:
            frames = tuple((lt, frame) for lt, _ts, frame in read_frames(path))
        except PcapError as e:
            raise StagingError(f"{SELFTEST_DIR}/{name}: {e}") from None
        cases.append(Case(f"{SELFTEST_DIR}/{name}", frames,
                          frozenset(expected.get(name, ()))))
    return cases


def self_test(staged: StagedSet, cases: Sequence[Case]) -> None:
    """Run every case through an engine holding `staged` (IPS mode, as inline); raises
    StagingError naming the case, the packet and the rule when one fails."""
    engine = Engine(list(staged.rules), FlowTable(FlowConfig(inline=True)),
                    EngineConfig(simulate_ips=True))
    for case in cases:
        engine.flows = FlowTable(FlowConfig(inline=True))  # cases share no flow
        decoder = Decoder(DecoderConfig(checksums=False))
        fired: set[int] = set()
        for n, (linktype, frame) in enumerate(case.frames, 1):
            pkt = decoder.decode(linktype, float(n), n, frame)
            if pkt is None:
                continue
            verdict = engine.process(pkt)
            alerts = [e["alert"] for e in engine.take_events() if e["event_type"] == "alert"]
            fired.update(a["signature_id"] for a in alerts)
            if verdict is not Verdict.ACCEPT and not case.expect:
                by = next((f"sid {a['signature_id']} ({a['signature']})" for a in alerts
                           if a["action"] == "blocked"), "an earlier drop of the flow")
                raise StagingError(f"self-test failed: {case.name}: packet {n} is benign "
                                   f"and was dropped by {by}")
        missing = sorted(case.expect - staged.disabled - fired)
        if missing:
            raise StagingError(f"self-test failed: {case.name}: expected sid(s) "
                               f"{', '.join(map(str, missing))} did not alert")
