"""The firewall compiler: what each policy allows, and bad input named by vif."""
import pytest

from netsec.firewall import FirewallConfig, FirewallError, Vif, compile_ruleset

CFG = FirewallConfig(uplink="uplink0", gateway="10.137.255.254", vpn_iface="wg0",
                     doh_addresses=("9.9.9.9",))


def rules_for(*vifs: Vif, cfg: FirewallConfig = CFG) -> list[str]:
    return compile_ruleset(cfg, vifs).splitlines()


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
        compile_ruleset(CFG, [vif])


def test_duplicate_addresses_are_refused() -> None:
    with pytest.raises(FirewallError, match="already used by vif2.0"):
        compile_ruleset(CFG, [Vif(2, 0, "10.137.0.3", "internet"),
                              Vif(3, 0, "10.137.0.3", "internet")])
