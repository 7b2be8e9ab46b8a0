"""sys-sec's settings file and its [vpn] table: good ones load, bad ones name what and where;
the bundle in force's policy taken under the owner's settings."""
from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest

from domains.syssec.controller import Controller, Settings
from domains.syssec.vpn import VpnConfig, VpnConfigError
from tests.conftest import refused_naming_the_file

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


@pytest.mark.parametrize(("text", "reason"), [
    ('schedules = "always"\n', r"\[schedules\] must be a table"),
    ('[schedules]\ngames = "mon-fri 08:00-16:00"\n', "games: must be a list of time windows"),
    ('[schedules]\ngames = ["weekdays 8-4"]\n', "games: time window 'weekdays 8-4'"),
    ('[schedules]\ngames = ["mon-fri 08:00-25:00"]\n', "25:00 is not a time of day"),
])
def test_a_schedule_that_does_not_parse_is_refused_at_load(tmp_path: Path, text: str,
                                                           reason: str) -> None:
    refused_naming_the_file(tmp_path / "syssec.toml", text, Settings.load, SystemExit, reason)


def test_the_bundles_policy_takes_effect_under_the_owners(tmp_path: Path) -> None:
    """The bundle in force (bundles/current, as the updater leaves it): its DoH endpoints
    join the owner's, its schedule applies to its own category and not to the owner's."""
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "adult.txt").write_text("own.example\n")
    current = tmp_path / "bundles" / "current"
    (current / "lists").mkdir(parents=True)
    (current / "lists" / "adult.txt").write_text("theirs.example\n")
    (current / "lists" / "games.txt").write_text("game.example\n")
    (current / "policy.toml").write_text(
        'doh_addresses = ["192.0.2.53"]\n'
        '[schedules]\nadult = ["daily 22:00-06:00"]\ngames = ["daily 22:00-06:00"]\n')
    ctl = Controller(None, tmp_path, Settings(doh_addresses=("9.9.9.9",)))
    assert ctl.doh_addresses() == ("9.9.9.9", "192.0.2.53")
    noon = dt.datetime(2026, 12, 2, 12, 0)
    assert ctl.blocklist.lookup("theirs.example", noon) == "adult"
    assert ctl.blocklist.lookup("game.example", noon) is None
    # changed on disk since verify took it: refused where it is read, the owner's stay
    (current / "policy.toml").write_text('doh_addresses = ["not-an-address"]\n')
    assert ctl.doh_addresses() == ("9.9.9.9",)


def test_engine_settings_load_and_a_bad_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "syssec.toml"
    path.write_text('engine_set = ["app-layer.protocols.http.parser=python"]\n')
    assert Settings.load(path).engine_set == ("app-layer.protocols.http.parser=python",)
    path.write_text('engine_set = ["app-layer.protocols.http.parser"]\n')
    with pytest.raises(SystemExit, match="syssec.toml: engine_set: want a list of"):
        Settings.load(path)
