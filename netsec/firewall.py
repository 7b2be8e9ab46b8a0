"""sys-sec's firewall: per-domain policy compiled to one ruleset per address family (pure).

sys-sec's network namespace belongs to Hyperwall alone, so the rulesets are the whole of its
filter, nat and mangle tables (IPv4, `iptables-restore`) and of its IPv6 filter table
(`ip6tables-restore`). `compile_rulesets` makes both from one policy, and sys-sec applies
them together or not at all. The kernel here lacks nft's `queue` expression, so the rules use
iptables (iptables-nft) throughout.

Guests get no IPv6, as Qubes OS guests without its `ipv6` feature: every IPv6 packet from or
to a guest interface (`vif+`, whether or not a policy names it yet) is dropped in INPUT,
FORWARD and OUTPUT, each guest's packets counted in the HW-GUEST6 chain. Neighbour discovery,
router advertisements and MLD from a guest never reach sys-sec's stack, sys-sec sends none to
a guest, and nothing from the uplink or the tunnel reaches a guest over IPv6. IPv6
anti-spoofing is therefore "all of it dropped". sys-sec's own IPv6 on its uplink keeps
working (its replies, neighbour discovery, the provider's channel). As defence in depth,
`sysctls` switches IPv6 off on each guest interface (disable_ipv6, accept_ra).

What the IPv4 ruleset enforces, for every guest vif:
- anti-spoofing: packets from `vif<domid>.<n>` must carry the guest's own /32 address;
- the guest's policy: `internet` (uplink only, never the LAN or another domain), `lan`
  (uplink including the local network), `filtered` (as internet, with DNS forced to
  sys-sec's resolver and DoT/known DoH endpoints refused), `vpn-only` (only through the VPN
  interface: nothing else is routed for it, so nothing leaks while the tunnel is down),
  `offline` (nothing);
- inter-domain isolation: traffic between vifs is dropped unless a policy names the peer;
- sys-sec itself is unreachable from guests but for its resolver (and ping to the gateway);
- every forwarded packet of an allowed flow goes to the IPS engine through NFQUEUE, without
  `--queue-bypass`: with no engine listening the kernel drops it (fail closed). Flows the
  engine marks clean (connmark bit `bypass_mark`) skip the queue in the kernel. For a
  `filtered` guest that is all of its traffic on every port, so the engine's DNS rules
  (netsec.policy.dns_rules) see DNS on any port.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

POLICIES = ("internet", "lan", "filtered", "vpn-only", "offline")
LAN_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
              "100.64.0.0/10")
GUEST_RANGE = "10.137.0.0/16"
# Guest interfaces: netback's and the ns backend's name, vif<domid>.<devid>.
GUEST_IFACES = "vif+"
# ICMPv6 sys-sec's own uplink needs (RFC 4890 4.4.1): router advertisement, neighbour
# solicitation and advertisement, only from the link itself (hop limit 255).
_ND_TYPES = ("router-advertisement", "neighbour-solicitation", "neighbour-advertisement")


class FirewallError(ValueError):
    """A policy or address that cannot be compiled; says which vif and why."""


@dataclass(frozen=True)
class Vif:
    domid: int
    devid: int
    ip: str
    policy: str
    # Guest addresses this guest may open connections to (inter-domain exceptions).
    allow_to: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"vif{self.domid}.{self.devid}"


@dataclass(frozen=True)
class FirewallConfig:
    uplink: str
    gateway: str
    vpn_iface: str | None = None
    # NFQUEUE number of the IPS engine; None forwards without inspection (no engine).
    queue: int | None = 0
    queue_count: int = 1
    bypass_mark: int = 0x1
    # sys-sec's resolver, reached by `filtered` guests on the gateway address.
    dns_port: int = 53
    # Addresses of DNS-over-HTTPS services `filtered` guests may not reach.
    doh_addresses: tuple[str, ...] = ()
    lan_ranges: tuple[str, ...] = field(default=LAN_RANGES)
    # The provider's channel (ProviderService) on sys-sec's uplink, if one is enrolled.
    provider_port: int | None = None


def _check(vif: Vif) -> None:
    if vif.policy not in POLICIES:
        raise FirewallError(f"{vif.name}: unknown policy {vif.policy!r} "
                            f"(known: {', '.join(POLICIES)})")
    for addr in (vif.ip, *vif.allow_to):
        try:
            ip = ipaddress.IPv4Address(addr)
        except ValueError:
            raise FirewallError(f"{vif.name}: {addr!r} is not an IPv4 address") from None
        if ip not in ipaddress.IPv4Network(GUEST_RANGE):
            raise FirewallError(f"{vif.name}: {addr} is outside the guest range {GUEST_RANGE}")


def _doh_ipv4(cfg: FirewallConfig) -> list[str]:
    """The IPv4 DoH endpoints; IPv6 ones need no rule (guests have no IPv6)."""
    out = []
    for addr in cfg.doh_addresses:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            raise FirewallError(f"doh_addresses: {addr!r} is not an IP address") from None
        if ip.version == 4:
            out.append(str(ip))
    return out


def _ips_target(cfg: FirewallConfig) -> list[str]:
    """The HW-IPS chain: bypassed flows pass, the rest go to the engine or are accepted."""
    if cfg.queue is None:
        return ["-A HW-IPS -j ACCEPT"]
    mark = f"0x{cfg.bypass_mark:x}/0x{cfg.bypass_mark:x}"
    if cfg.queue_count > 1:
        # Plain --queue-balance hashes the address pair and protocol symmetrically (the kernel
        # orders saddr/daddr before jhash; ports are NOT in the hash), so both directions of a
        # flow reach the same worker, whose flow table must see them both. --queue-cpu-fanout
        # would pick the queue by the receiving CPU and split a flow's directions.
        queue = f"--queue-balance {cfg.queue}:{cfg.queue + cfg.queue_count - 1}"
    else:
        queue = f"--queue-num {cfg.queue}"
    return [f"-A HW-IPS -m connmark --mark {mark} -j ACCEPT",
            f"-A HW-IPS -j NFQUEUE {queue}"]


def _vif_rules(cfg: FirewallConfig, vif: Vif, peers: dict[str, Vif]) -> tuple[list[str], list[str]]:
    """(filter rules, nat rules) for one vif."""
    f: list[str] = []
    nat: list[str] = []
    i, ip = vif.name, vif.ip
    # Anti-spoofing, before anything else can accept the packet.
    f.append(f"-A HW-SPOOF -i {i} ! -s {ip}/32 -j DROP")
    # sys-sec itself: the resolver and ping on the gateway, nothing else (no management).
    if vif.policy in ("internet", "lan", "filtered"):
        for proto in ("udp", "tcp"):
            f.append(f"-A HW-INPUT -i {i} -d {cfg.gateway}/32 -p {proto} "
                     f"--dport {cfg.dns_port} -j ACCEPT")
    if vif.policy != "offline":
        f.append(f"-A HW-INPUT -i {i} -d {cfg.gateway}/32 -p icmp --icmp-type echo-request "
                 "-j ACCEPT")
    # Inter-domain exceptions named by the policy; everything else between vifs is dropped.
    for peer_ip in vif.allow_to:
        peer = peers.get(peer_ip)
        if peer is not None:
            f.append(f"-A HW-FORWARD -i {i} -o {peer.name} -s {ip}/32 -d {peer_ip}/32 "
                     "-j HW-IPS")
            f.append(f"-A HW-FORWARD -i {peer.name} -o {i} -s {peer_ip}/32 -d {ip}/32 "
                     "-m conntrack --ctstate ESTABLISHED,RELATED -j HW-IPS")
    if vif.policy == "filtered":
        # The guest may use no resolver but sys-sec's: plain DNS anywhere is redirected to
        # it, DNS-over-TLS is refused, known DNS-over-HTTPS endpoints are unreachable.
        for proto in ("udp", "tcp"):
            nat.append(f"-A HW-DNS -i {i} -p {proto} --dport 53 "
                       f"-j DNAT --to-destination {cfg.gateway}:{cfg.dns_port}")
        f.append(f"-A HW-FORWARD -i {i} -p tcp --dport 853 -j REJECT --reject-with tcp-reset")
        f.append(f"-A HW-FORWARD -i {i} -p udp --dport 853 -j DROP")
        for doh in _doh_ipv4(cfg):
            f.append(f"-A HW-FORWARD -i {i} -d {doh} -j REJECT --reject-with icmp-port-unreachable")
    if vif.policy in ("internet", "filtered", "lan"):
        if vif.policy != "lan":
            for lan in cfg.lan_ranges:
                f.append(f"-A HW-FORWARD -i {i} -o {cfg.uplink} -d {lan} -j DROP")
        f.append(f"-A HW-FORWARD -i {i} -o {cfg.uplink} -j HW-IPS")
        f.append(f"-A HW-FORWARD -i {cfg.uplink} -o {i} -d {ip}/32 "
                 "-m conntrack --ctstate ESTABLISHED,RELATED -j HW-IPS")
    elif vif.policy == "vpn-only" and cfg.vpn_iface:
        # Only the tunnel: no rule to the uplink exists for this guest, so when the tunnel is
        # down its packets hit FORWARD's DROP policy (the kill switch).
        f.append(f"-A HW-FORWARD -i {i} -o {cfg.vpn_iface} -j HW-IPS")
        f.append(f"-A HW-FORWARD -i {cfg.vpn_iface} -o {i} -d {ip}/32 "
                 "-m conntrack --ctstate ESTABLISHED,RELATED -j HW-IPS")
    return f, nat


@dataclass(frozen=True)
class Rulesets:
    """Both families' rulesets for one policy: sys-sec applies both or neither."""

    ipv4: str                                   # iptables-restore input
    ipv6: str                                   # ip6tables-restore input
    # (path under /proc/sys, value) for each guest interface, after the rulesets.
    sysctls: tuple[tuple[str, str], ...] = ()


def compile_rulesets(cfg: FirewallConfig, vifs: Iterable[Vif]) -> Rulesets:
    """Both rulesets for sys-sec's namespace; FirewallError names the first bad vif."""
    vifs = sorted(vifs, key=lambda v: (v.domid, v.devid))
    peers: dict[str, Vif] = {}
    for vif in vifs:
        _check(vif)
        if vif.ip in peers:
            raise FirewallError(f"{vif.name}: {vif.ip} is already used by {peers[vif.ip].name}")
        peers[vif.ip] = vif
    # accept_ra first: should anything switch IPv6 back on, the guest still configures none.
    sysctls = tuple((f"net/ipv6/conf/{v.name}/{key}", value) for v in vifs
                    for key, value in (("accept_ra", "0"), ("disable_ipv6", "1")))
    return Rulesets(_ipv4(cfg, vifs, peers), _ipv6(cfg, vifs), sysctls)


def _ipv6(cfg: FirewallConfig, vifs: list[Vif]) -> str:
    """No IPv6 to or from any guest interface; sys-sec's own uplink as the IPv4 INPUT."""
    per_vif = [f"-A HW-GUEST6 {way} {v.name} -j DROP" for v in vifs for way in ("-i", "-o")]
    lines = [
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":HW-GUEST6 - [0:0]",
        # Before anything that accepts: conntrack state or ICMPv6 type must not let a
        # guest's packet through.
        f"-A INPUT -i {GUEST_IFACES} -j HW-GUEST6",
        f"-A FORWARD -i {GUEST_IFACES} -j HW-GUEST6",
        f"-A FORWARD -o {GUEST_IFACES} -j HW-GUEST6",
        f"-A OUTPUT -o {GUEST_IFACES} -j HW-GUEST6",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -m conntrack --ctstate INVALID -j DROP",
        *(f"-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type {t} -m hl --hl-eq 255 -j ACCEPT"
          for t in _ND_TYPES),
        *([f"-A INPUT -i {cfg.uplink} -p tcp --dport {cfg.provider_port} -j ACCEPT"]
          if cfg.provider_port else []),
        # One counter per guest and direction; the last rule counts vifs no policy names yet.
        *per_vif,
        "-A HW-GUEST6 -j DROP",
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"


def _ipv4(cfg: FirewallConfig, vifs: list[Vif], peers: dict[str, Vif]) -> str:
    filter_rules: list[str] = []
    nat_rules: list[str] = []
    for vif in vifs:
        f, n = _vif_rules(cfg, vif, peers)
        filter_rules += f
        nat_rules += n
    mark = f"0x{cfg.bypass_mark:x}"
    lines = [
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":HW-SPOOF - [0:0]",
        ":HW-INPUT - [0:0]",
        ":HW-FORWARD - [0:0]",
        ":HW-IPS - [0:0]",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -j HW-SPOOF",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -m conntrack --ctstate INVALID -j DROP",
        "-A INPUT -j HW-INPUT",
        *([f"-A INPUT -i {cfg.uplink} -p tcp --dport {cfg.provider_port} -j ACCEPT"]
          if cfg.provider_port else []),
        "-A FORWARD -j HW-SPOOF",
        "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
        "-A FORWARD -j HW-FORWARD",
        *filter_rules,
        *_ips_target(cfg),
        "COMMIT",
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":HW-DNS - [0:0]",
        "-A PREROUTING -j HW-DNS",
        *nat_rules,
        f"-A POSTROUTING -s {GUEST_RANGE} -o {cfg.uplink} -j MASQUERADE",
        *([f"-A POSTROUTING -s {GUEST_RANGE} -o {cfg.vpn_iface} -j MASQUERADE"]
          if cfg.vpn_iface else []),
        "COMMIT",
        "*mangle",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        # The engine's verdict marks a packet whose flow it judged clean; remember it on the
        # connection so later packets of the flow skip the queue (HW-IPS's first rule).
        f"-A POSTROUTING -m mark --mark {mark}/{mark} -j CONNMARK --save-mark "
        f"--nfmask {mark} --ctmask {mark}",
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"
