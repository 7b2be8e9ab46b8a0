"""sys-sec's settings file and its [vpn] table: good ones load, bad ones name what and where."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from netsec.syssec import Settings
from netsec.vpn import VpnConfig, VpnConfigError

KEY = base64.b64encode(bytes(range(32))).decode()
VPN = {"private_key": KEY, "peer_public_key": KEY, "endpoint": "203.0.113.202:51820",
       "address": "10.200.1.2/32", "routes": ["10.200.0.0/16"]}


def test_a_good_vpn_table_loads() -> None:
    cfg = VpnConfig.from_settings(VPN, "syssec.toml")
    assert cfg.routes == ("10.200.0.0/16",) and cfg.keepalive == 5


@pytest.mark.parametrize(("change", "says"), [
    ({"private_key": "c2hvcnQ="}, "private_key is not a WireGuard key"),
    ({"peer_public_key": "not base64!"}, "peer_public_key is not a WireGuard key"),
    ({"endpoint": "203.0.113.202"}, "is not host:port"),
    ({"address": "10.200.1.300/32"}, "does not appear to be an IPv4 or IPv6 interface"),
    ({"routes": ["10.200.0.0/33"]}, "syssec.toml: [vpn]"),
])
def test_a_bad_vpn_table_is_refused_naming_the_key(change: dict, says: str) -> None:
    with pytest.raises(VpnConfigError) as e:
        VpnConfig.from_settings({**VPN, **change}, "syssec.toml")
    assert says in str(e.value)


def test_a_missing_key_is_named() -> None:
    raw = dict(VPN)
    del raw["endpoint"]
    with pytest.raises(VpnConfigError, match="needs 'endpoint'"):
        VpnConfig.from_settings(raw, "syssec.toml")


def test_settings_default_without_a_file_and_refuse_unknown_keys(tmp_path: Path) -> None:
    assert Settings.load(tmp_path / "none.toml") == Settings()
    path = tmp_path / "syssec.toml"
    path.write_text('uplink = "eth9"\nvpn_interface = "wg9"\n')
    with pytest.raises(SystemExit, match="syssec.toml: unknown setting 'vpn_interface'"):
        Settings.load(path)
    path.write_text('dns_upstream = "192.0.2.1"\n[vpn]\nendpoint = "x:1"\n')
    with pytest.raises(SystemExit, match=r"\[vpn\] needs 'private_key'"):
        Settings.load(path)
    path.write_text('uplink = \n')
    with pytest.raises(SystemExit, match="syssec.toml"):
        Settings.load(path)


def test_clean_destinations_and_category_schedules(tmp_path: Path) -> None:
    path = tmp_path / "syssec.toml"
    path.write_text('clean = ["192.0.2.0/24"]\n[schedules]\ngames = ["mon-fri 08:00-16:00"]\n')
    settings = Settings.load(path)
    assert settings.clean == ("192.0.2.0/24",)
    assert settings.schedules == {"games": ["mon-fri 08:00-16:00"]}


def test_engine_settings_load_and_a_bad_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "syssec.toml"
    path.write_text('engine_set = ["app-layer.protocols.http.parser=python"]\n')
    assert Settings.load(path).engine_set == ("app-layer.protocols.http.parser=python",)
    path.write_text('engine_set = ["app-layer.protocols.http.parser"]\n')
    with pytest.raises(SystemExit, match="syssec.toml: engine_set: want a list of"):
        Settings.load(path)
