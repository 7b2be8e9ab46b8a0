"""The simulated internet and corporate network (root): what sys-sec's namespace reaches
through its uplink, and that the world leaves nothing behind."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from dom0.sim.guest_scripts import DIG, FETCH
from dom0.sim.net import INTRANET, PUBLIC_RESOLVER, ROUTER, UPLINK, ZONE, SimNet
from dom0.sim.servers import EICAR
from domains.runner import CommandError, run_sync
from tests.simworld import PROBE, TLS_NAMES, py, sys_sec_namespace, tag, world

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def net() -> Iterator[tuple[SimNet, str]]:
    with world(f"hwnet{tag()}") as both:
        yield both


def test_the_uplink_reaches_a_web_server_by_name(net: tuple[SimNet, str]) -> None:
    _, sys_sec = net
    address = py(sys_sec, DIG, "allowed.example", ROUTER)
    assert address == ZONE["allowed.example"]
    assert py(sys_sec, FETCH, address, "80", "allowed.example") == "hello from allowed.example"
    # Each name is its own host: another address, another page.
    news = py(sys_sec, DIG, "news.example", ROUTER)
    assert news == ZONE["news.example"] != address
    assert py(sys_sec, FETCH, news, "80", "news.example") == "hello from news.example"
    assert py(sys_sec, DIG, "nowhere.example", ROUTER) == "NOANSWER"


def test_the_public_resolver_answers_too(net: tuple[SimNet, str]) -> None:
    _, sys_sec = net
    assert py(sys_sec, DIG, "dns.google", PUBLIC_RESOLVER) == ZONE["dns.google"]
    # A client that takes answers only from the address it asked gets them too.
    assert py(sys_sec, PROBE, "dns.google", ZONE["dns.google"], PUBLIC_RESOLVER) == "True"


@pytest.mark.parametrize("sni", ["allowed.example", "news.example", "malware.example"])
def test_tls_serves_the_certificate_of_the_name_asked(net: tuple[SimNet, str],
                                                      sni: str) -> None:
    world_, sys_sec = net
    # One address, several names: the certificate follows SNI and verifies with the CA.
    assert py(sys_sec, TLS_NAMES, ZONE["allowed.example"], sni, str(world_.ca_file)) == sni


def test_tls_for_an_unknown_name_does_not_verify(net: tuple[SimNet, str]) -> None:
    world_, sys_sec = net
    got = py(sys_sec, TLS_NAMES, ZONE["allowed.example"], "elsewhere.example",
             str(world_.ca_file))
    assert got.startswith("FAILED SSLCertVerificationError")


def test_the_eicar_download_serves_the_test_string(net: tuple[SimNet, str]) -> None:
    _, sys_sec = net
    body = py(sys_sec, FETCH, ZONE["malware.example"], "80", "malware.example", "",
              "/download/eicar.txt")
    assert body.encode() == EICAR
    assert "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" in body


def test_the_intranet_is_not_routed_from_the_internet(net: tuple[SimNet, str]) -> None:
    _, sys_sec = net
    assert py(sys_sec, FETCH, INTRANET, "80", "intranet.corp").startswith("FAILED")


async def test_stop_leaves_nothing_behind() -> None:
    prefix = f"hwnet{tag()}z"
    with sys_sec_namespace(f"{prefix}sec") as sys_sec:
        net = await SimNet(prefix, wg_iface=f"{prefix}c").start(sys_sec)
        try:
            # What there is to remove, so an empty list afterwards means something.
            found = net.leftovers()
            assert f"netns {prefix}-inet" in found and f"netns {prefix}-corp" in found
            assert any(f.startswith("wireguard-go") for f in found)
            assert any(f.startswith("socket") for f in found)
        finally:
            await net.stop()
        assert net.leftovers() == []
        # sys-sec's end of the uplink went with the internet's namespace.
        assert UPLINK not in run_sync(["ip", "-o", "link"], netns=sys_sec).stdout.decode()


def test_a_start_that_fails_half_way_leaves_nothing_behind() -> None:
    prefix = f"hwnet{tag()}y"
    with sys_sec_namespace(f"{prefix}sec") as sys_sec:
        # sys-sec already has an uplink0: the internet is made, then the cable fails.
        run_sync(["ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "hwnetpeer0"],
                 netns=sys_sec)
        net = SimNet(prefix, wg_iface=f"{prefix}c")
        with pytest.raises(CommandError, match=UPLINK):
            net.plug(sys_sec)
        assert net.leftovers() == []


def test_plugging_into_a_missing_namespace_says_so() -> None:
    net = SimNet(f"hwnet{tag()}x")
    with pytest.raises(ValueError, match="no network namespace 'hwnetnowhere'"):
        net.plug("hwnetnowhere")
    assert net.leftovers() == []


def test_a_bad_zone_is_refused() -> None:
    with pytest.raises(ValueError, match=r"simnet zone: a\.example -> 'nowhere'"):
        SimNet("hwnetbad", zone={"a.example": "nowhere"})
