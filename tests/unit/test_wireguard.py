"""What Hyperwall tells `wg` and reads back from it (sans-IO, no root)."""
from __future__ import annotations

import base64

import pytest

from domains.syssec.vpn import handshake_fresh
from domains.syssec.wireguard import (
    Peer,
    WireGuardConfigError,
    check_iface,
    config_text,
    latest_handshakes,
)

A = base64.b64encode(bytes(32)).decode()
B = base64.b64encode(bytes(range(32))).decode()


def test_a_client_and_a_server_config() -> None:
    assert config_text(A, [Peer(B, ("10.200.0.0/16",), "203.0.113.202:51820", 5)]) == (
        f"[Interface]\nPrivateKey = {A}\n\n[Peer]\nPublicKey = {B}\n"
        "AllowedIPs = 10.200.0.0/16\nEndpoint = 203.0.113.202:51820\n"
        "PersistentKeepalive = 5\n")
    server = config_text(A, [Peer(B, ("10.200.1.2/32", "10.137.0.0/16"))], listen_port=51820)
    assert "ListenPort = 51820\n" in server
    assert "AllowedIPs = 10.200.1.2/32, 10.137.0.0/16\n" in server
    assert "Endpoint" not in server and "Keepalive" not in server


@pytest.mark.parametrize(("private", "peer", "port", "says"), [
    ("c2hvcnQ=", Peer(B, ()), None, "the private key is not a WireGuard key"),
    (A, Peer("not base64!", ()), None, "a peer's public key is not a WireGuard key"),
    (A, Peer(B, ("10.200.0.0/33",)), None, f"peer {B}: allowed IP"),
    (A, Peer(B, ()), 70000, "listen port 70000 is out of range"),
])
def test_bad_values_are_refused_naming_which(private: str, peer: Peer, port: int | None,
                                            says: str) -> None:
    with pytest.raises(WireGuardConfigError, match=says.replace("(", r"\(")):
        config_text(private, [peer], port)


def test_interface_names() -> None:
    assert check_iface("wg0") == "wg0"
    for bad in ("", "a" * 16, "wg 0", "wg/0"):
        with pytest.raises(WireGuardConfigError, match="is not an interface name"):
            check_iface(bad)


def test_latest_handshakes_and_freshness() -> None:
    seen = latest_handshakes(f"{A}\t1700000000\n{B}\t0\n")
    assert seen == {A: 1700000000, B: 0}
    assert handshake_fresh(seen, A, now=1700000100)
    assert not handshake_fresh(seen, A, now=1700000181)   # keys dropped after 180 s
    assert not handshake_fresh(seen, B, now=1700000000)   # never
    assert not handshake_fresh(seen, "unknown", now=1700000000)
    assert latest_handshakes("") == {}
    with pytest.raises(WireGuardConfigError, match="line 2: cannot read"):
        latest_handshakes(f"{A}\t1\n{B}\tsoon\n")
