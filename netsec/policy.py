"""sys-sec's policy core (pure): what dom0 wrote under sys-sec's backend directories, turned
into the firewall's vifs, the guest-name map, and the engine rules that block categories by
TLS SNI and HTTP Host for `filtered` guests.

Everything read here was written by dom0 into sys-sec's own tree, but it is still checked:
a vif whose address or policy does not parse is shut (`offline`) and reported, and the
others are unaffected.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass, field

from netsec.blocklist import Blocklist
from netsec.firewall import GUEST_RANGE, POLICIES, Vif

POLICY_SID_BASE = 9_100_000


@dataclass(frozen=True)
class VifKeys:
    """The keys of one backend directory `backend/vif/<domid>/<devid>`, as read."""

    domid: int
    devid: int
    ip: bytes | None
    policy: bytes | None
    name: bytes | None


@dataclass
class Plan:
    vifs: list[Vif] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)      # guest address -> domain name
    errors: list[str] = field(default_factory=list)

    @property
    def filtered(self) -> list[str]:
        return sorted(v.ip for v in self.vifs if v.policy == "filtered")

    def applied_text(self) -> str:
        """One `domid/devid name ip policy` line per vif in force (sys-sec's data/ tree)."""
        return "\n".join(f"{v.domid}/{v.devid} {self.names[v.ip]} {v.ip} {v.policy}"
                         for v in self.vifs)

    def domains_json(self) -> str:
        """The address -> name map hyperwall-ipsd reads (`--domains`), sorted so that an
        unchanged plan writes the same bytes."""
        return json.dumps(self.names, sort_keys=True, separators=(",", ":")) + "\n"


def _text(raw: bytes | None) -> str | None:
    try:
        return raw.decode("ascii") if raw is not None else None
    except UnicodeDecodeError:
        return None


def plan(keys: list[VifKeys]) -> Plan:
    out = Plan()
    for k in sorted(keys, key=lambda k: (k.domid, k.devid)):
        where = f"backend/vif/{k.domid}/{k.devid}"
        ip, policy = _text(k.ip), _text(k.policy)
        try:
            if ip is None or ipaddress.IPv4Address(ip) not in ipaddress.IPv4Network(
                    GUEST_RANGE):
                raise ValueError
        except ValueError:
            out.errors.append(f"{where}/ip: {k.ip!r} is not a guest address; vif not routed")
            continue
        if ip in out.names:
            out.errors.append(f"{where}/ip: {ip} is already {out.names[ip]}'s; vif not routed")
            continue
        if policy not in POLICIES:
            out.errors.append(f"{where}/hyperwall/policy: {k.policy!r} is not one of "
                              f"{', '.join(POLICIES)}; the vif is offline")
            policy = "offline"
        name = _text(k.name) or f"domain-{k.domid}"
        out.vifs.append(Vif(k.domid, k.devid, ip, policy))
        out.names[ip] = name
    return out


def _rule_text(s: str) -> str:
    # Only what a domain name can hold reaches a rule: blocklist.normalise_domain made it.
    return s.replace('"', "").replace(";", "").replace("\\", "")


def category_rules(blocklist: Blocklist, guests: list[str],
                   when: dt.datetime | None = None) -> str:
    """Drop rules for every blocked site, by TLS SNI and by HTTP Host, for these guests;
    with `when`, only for the categories whose schedule is in force then.

    dotprefix + endswith: `.example.com` matches example.com and its subdomains, not
    notexample.com."""
    if not guests:
        return ""
    src = "[" + ",".join(guests) + "]"
    lines = []
    sid = POLICY_SID_BASE
    for cat_name in sorted(blocklist.categories):
        category = blocklist.categories[cat_name]
        if when is not None and not category.active(when):
            sid += 2 * len(category.domains)    # sids stay stable across schedule changes
            continue
        for site in sorted(category.domains):
            site, cat = _rule_text(site), _rule_text(cat_name)
            meta = f"hyperwall_category {cat}, hyperwall_site {site}"
            # http.host is lower-case already; SNI is as the client sent it.
            for by, proto, buf, case in (("sni", "tls", "tls.sni", " nocase;"),
                                         ("host", "http", "http.host", "")):
                sid += 1
                lines.append(
                    f'drop {proto} {src} any -> any any (msg:"hyperwall {cat}: {site} ({by})"; '
                    f'flow:to_server; {buf}; dotprefix; content:".{site}"; endswith;{case} '
                    f'metadata:{meta}, hyperwall_by {by}; sid:{sid}; rev:1;)')
    return "\n".join(lines) + "\n"



DNS_SID_BASE = 9_090_000


def dns_rules(guests: list[str], resolver: str) -> str:
    """Drop DNS from these guests to anything but sys-sec's resolver at `resolver`, on any
    port (port 53 never gets here: the firewall redirects it to the resolver first).

    The first rule is the engine's DNS detection (by content, UDP and TCP). A UDP flow whose
    first datagram was not DNS is never detected as DNS afterwards (as in Suricata), so the
    second rule looks at every datagram for a query's header: one question, no answers,
    QR 0 and opcode QUERY."""
    if not guests:
        return ""
    src = "[" + ",".join(guests) + "]"
    msg = "hyperwall dns: a filtered guest's DNS to a server other than sys-sec's resolver"
    meta = "metadata:hyperwall_by dns-elsewhere;"
    return (f'drop dns {src} any -> !{resolver} any (msg:"{msg}"; flow:to_server; {meta} '
            f'sid:{DNS_SID_BASE + 1}; rev:1;)\n'
            f'drop udp {src} any -> !{resolver} any (msg:"{msg} (query header)"; dsize:>16; '
            f'content:"|00 01 00 00|"; offset:4; depth:4; byte_test:1,<,8,2; {meta} '
            f'sid:{DNS_SID_BASE + 2}; rev:1;)\n')
