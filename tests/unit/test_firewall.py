"""The firewall compiler: what each policy allows in each family, and bad input named by vif."""
import pytest

from netsec.firewall import POLICIES, FirewallConfig, FirewallError, Vif, compile_rulesets

CFG = FirewallConfig(uplink="uplink0", gateway="10.137.255.254", vpn_iface="wg0",
                     doh_addresses=("9.9.9.9",))


def rules_for(*vifs: Vif, cfg: FirewallConfig = CFG) -> list[str]:
    return compile_rulesets(cfg, vifs).ipv4.splitlines()


def test_default_policies_drop_and_fail_closed() -> None:
    lines = rules_for(Vif(2, 0, "10.137.0.3", "internet"))
    assert ":INPUT DROP [0:0]" in lines and ":FORWARD DROP [0:0]" in lines
    queue = [r for r in lines if "NFQUEUE" in r]
    assert queue == ["-A HW-IPS -j NFQUEUE --queue-num 0"]  # no --queue-bypass: fail closed
    assert lines.index("-A HW-IPS -m connmark --mark 0x1/0x1 -j ACCEPT") < lines.index(queue[0])


def test_anti_spoofing_per_vif() -> None:
    lines = rules_for(Vif(2, 0, "10.137.0.3", "internet"), Vif(3, 0, "10.137.0.4", "offline"))
    assert "-A HW-SPOOF -i vif2.0 ! -s 10.137.0.3/32 -j DROP" in lines
    assert "-A HW-SPOOF -i vif3.0 ! -s 10.137.0.4/32 -j DROP" in lines


def test_internet_reaches_uplink_but_not_lan() -> None:
    lines = rules_for(Vif(2, 0, "10.137.0.3", "internet"))
    assert "-A HW-FORWARD -i vif2.0 -o uplink0 -d 192.168.0.0/16 -j DROP" in lines
    assert "-A HW-FORWARD -i vif2.0 -o uplink0 -j HW-IPS" in lines
    assert not any("-o wg0" in r for r in lines if "vif2.0" in r)


def test_lan_reaches_the_lan() -> None:
    lines = rules_for(Vif(2, 0, "10.137.0.3", "lan"))
    assert not any("-d 192.168.0.0/16 -j DROP" in r for r in lines)


def test_vpn_only_has_no_path_but_the_tunnel() -> None:
    lines = [r for r in rules_for(Vif(4, 0, "10.137.0.5", "vpn-only")) if "vif4.0" in r]
    forward = [r for r in lines if r.startswith("-A HW-FORWARD")]
    assert forward == ["-A HW-FORWARD -i vif4.0 -o wg0 -j HW-IPS",
                       "-A HW-FORWARD -i wg0 -o vif4.0 -d 10.137.0.5/32 "
                       "-m conntrack --ctstate ESTABLISHED,RELATED -j HW-IPS"]


def test_vpn_only_without_a_tunnel_forwards_nothing() -> None:
    cfg = FirewallConfig(uplink="uplink0", gateway="10.137.255.254", vpn_iface=None)
    lines = rules_for(Vif(4, 0, "10.137.0.5", "vpn-only"), cfg=cfg)
    assert not any(r.startswith("-A HW-FORWARD") and "vif4.0" in r for r in lines)


def test_guests_are_masqueraded_onto_the_uplink_and_the_tunnel() -> None:
    # The corporate server admits only sys-sec's tunnel address (its peer's allowed IPs),
    # so guests must leave through wg0 under that address, as through the uplink.
    nat = [r for r in rules_for(Vif(4, 0, "10.137.0.5", "vpn-only")) if "MASQUERADE" in r]
    assert nat == ["-A POSTROUTING -s 10.137.0.0/16 -o uplink0 -j MASQUERADE",
                   "-A POSTROUTING -s 10.137.0.0/16 -o wg0 -j MASQUERADE"]
    cfg = FirewallConfig(uplink="uplink0", gateway="10.137.255.254", vpn_iface=None)
    assert not any("MASQUERADE" in r and "wg0" in r
                   for r in rules_for(Vif(4, 0, "10.137.0.5", "vpn-only"), cfg=cfg))


def test_filtered_forces_dns_and_blocks_dot_doh() -> None:
    lines = rules_for(Vif(5, 0, "10.137.0.6", "filtered"))
    assert ("-A HW-DNS -i vif5.0 -p udp --dport 53 -j DNAT --to-destination "
            "10.137.255.254:53") in lines
    assert "-A HW-FORWARD -i vif5.0 -p tcp --dport 853 -j REJECT --reject-with tcp-reset" in lines
    assert any("-d 9.9.9.9" in r for r in lines)


def test_offline_gets_nothing() -> None:
    lines = [r for r in rules_for(Vif(6, 0, "10.137.0.7", "offline")) if "vif6.0" in r]
    assert lines == ["-A HW-SPOOF -i vif6.0 ! -s 10.137.0.7/32 -j DROP"]


def test_guests_are_isolated_unless_a_policy_names_the_peer() -> None:
    a, b = Vif(2, 0, "10.137.0.3", "internet"), Vif(3, 0, "10.137.0.4", "internet")
    assert not any("-o vif3.0" in r and "-i vif2.0" in r for r in rules_for(a, b))
    a = Vif(2, 0, "10.137.0.3", "internet", allow_to=("10.137.0.4",))
    assert "-A HW-FORWARD -i vif2.0 -o vif3.0 -s 10.137.0.3/32 -d 10.137.0.4/32 -j HW-IPS" \
        in rules_for(a, b)


def test_no_engine_means_plain_forwarding() -> None:
    cfg = FirewallConfig(uplink="uplink0", gateway="10.137.255.254", queue=None)
    assert "-A HW-IPS -j ACCEPT" in rules_for(Vif(2, 0, "10.137.0.3", "internet"), cfg=cfg)


@pytest.mark.parametrize(("vif", "message"), [
    (Vif(2, 0, "10.137.0.3", "everything"), "vif2.0: unknown policy 'everything'"),
    (Vif(2, 0, "10.137.0.300", "internet"), "vif2.0: '10.137.0.300' is not an IPv4"),
    (Vif(2, 0, "192.168.1.5", "internet"), "outside the guest range"),
    (Vif(2, 0, "10.137.0.3; -j ACCEPT", "internet"), "is not an IPv4"),
])
def test_bad_input_is_named(vif: Vif, message: str) -> None:
    with pytest.raises(FirewallError, match=message.replace(".", r"\.")):
        compile_rulesets(CFG, [vif])


def test_duplicate_addresses_are_refused() -> None:
    with pytest.raises(FirewallError, match="already used by vif2.0"):
        compile_rulesets(CFG, [Vif(2, 0, "10.137.0.3", "internet"),
                              Vif(3, 0, "10.137.0.3", "internet")])


def ipv6_for(*vifs: Vif, cfg: FirewallConfig = CFG) -> list[str]:
    return compile_rulesets(cfg, vifs).ipv6.splitlines()


@pytest.mark.parametrize("policy", POLICIES)
def test_no_ipv6_to_or_from_any_guest_whatever_its_policy(policy: str) -> None:
    lines = ipv6_for(Vif(2, 0, "10.137.0.3", policy, allow_to=("10.137.0.4",)),
                     Vif(3, 0, "10.137.0.4", "internet"))
    assert ":INPUT DROP [0:0]" in lines and ":FORWARD DROP [0:0]" in lines
    hooks = ["-A INPUT -i vif+ -j HW-GUEST6", "-A FORWARD -i vif+ -j HW-GUEST6",
             "-A FORWARD -o vif+ -j HW-GUEST6", "-A OUTPUT -o vif+ -j HW-GUEST6"]
    # Each chain's first rules: nothing that accepts (lo, conntrack, ND) comes before them.
    assert [r for r in lines if r.startswith("-A ") and "vif" in r][:4] == hooks
    first_accept = min(i for i, r in enumerate(lines) if r.endswith("-j ACCEPT"))
    assert all(lines.index(h) < first_accept for h in hooks)
    guest = [r for r in lines if r.startswith("-A HW-GUEST6")]
    assert guest == ["-A HW-GUEST6 -i vif2.0 -j DROP", "-A HW-GUEST6 -o vif2.0 -j DROP",
                     "-A HW-GUEST6 -i vif3.0 -j DROP", "-A HW-GUEST6 -o vif3.0 -j DROP",
                     "-A HW-GUEST6 -j DROP"]
    assert not any("ACCEPT" in r or "RETURN" in r for r in guest)


def test_sys_secs_own_uplink_ipv6_keeps_nd_replies_and_the_provider_channel() -> None:
    cfg = FirewallConfig(uplink="uplink0", gateway="10.137.255.254", provider_port=50443)
    lines = ipv6_for(Vif(2, 0, "10.137.0.3", "internet"), cfg=cfg)
    assert "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT" in lines
    assert ("-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation "
            "-m hl --hl-eq 255 -j ACCEPT") in lines
    assert "-A INPUT -i uplink0 -p tcp --dport 50443 -j ACCEPT" in lines
    assert ":OUTPUT ACCEPT [0:0]" in lines


def test_one_policy_gives_both_families_and_the_guest_interfaces_sysctls() -> None:
    r = compile_rulesets(CFG, [Vif(3, 1, "10.137.0.4", "filtered")])
    assert "vif3.1" in r.ipv4 and "vif3.1" in r.ipv6
    assert r.sysctls == (("net/ipv6/conf/vif3.1/accept_ra", "0"),
                         ("net/ipv6/conf/vif3.1/disable_ipv6", "1"))


def test_doh_endpoints_refused_per_family_and_a_bad_one_named() -> None:
    cfg = FirewallConfig(uplink="uplink0", gateway="10.137.255.254",
                         doh_addresses=("9.9.9.9", "2620:fe::fe"))
    lines = rules_for(Vif(5, 0, "10.137.0.6", "filtered"), cfg=cfg)
    assert [r for r in lines if "-d 9.9.9.9" in r or "2620" in r] == [
        "-A HW-FORWARD -i vif5.0 -d 9.9.9.9 -j REJECT --reject-with icmp-port-unreachable"]
    assert not any("9.9.9.9" in r for r in rules_for(Vif(5, 0, "10.137.0.6", "internet"),
                                                     cfg=cfg))
    bad = FirewallConfig(uplink="uplink0", gateway="10.137.255.254",
                         doh_addresses=("dns.example",))
    with pytest.raises(FirewallError, match="doh_addresses: 'dns.example' is not an IP"):
        compile_rulesets(bad, [Vif(5, 0, "10.137.0.6", "filtered")])


def test_a_filtered_guest_has_every_port_to_the_uplink_inspected() -> None:
    lines = [r for r in rules_for(Vif(5, 0, "10.137.0.6", "filtered")) if "vif5.0" in r]
    to_uplink = [r for r in lines if "-o uplink0" in r and "-i vif5.0" in r]
    # Only the LAN drops and one catch-all to the engine: no port-limited queueing.
    assert to_uplink[-1] == "-A HW-FORWARD -i vif5.0 -o uplink0 -j HW-IPS"
    assert all(r.endswith("-j DROP") and "--dport" not in r for r in to_uplink[:-1])


def test_several_workers_share_the_queue_by_address_pair() -> None:
    cfg = FirewallConfig(uplink="uplink0", gateway="10.137.255.254", queue=4, queue_count=2)
    queue = [r for r in rules_for(Vif(2, 0, "10.137.0.3", "internet"), cfg=cfg) if "NFQUEUE" in r]
    # Symmetric address hash, no CPU fanout (it splits a flow's directions), no bypass.
    assert queue == ["-A HW-IPS -j NFQUEUE --queue-balance 4:5"]
