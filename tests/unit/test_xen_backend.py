"""The xen backend's pure parts: the xl.cfg it writes and how it reads `xl list`."""
from __future__ import annotations

from pathlib import Path

import pytest

from dom0.backends.base import RunState
from dom0.backends.xen import GuestImage, GuestImages, parse_xl_list, vif_spec, xl_config
from dom0.config import DomainSpec
from dom0.layout import vif_addressing

DATA = Path(__file__).resolve().parents[1] / "xen" / "data"   # captured from Xen 4.17
IMAGE = GuestImage(Path("/var/lib/hyperwall/xen/vmlinuz"),
                   Path("/var/lib/hyperwall/xen/agent.cpio"))
# A blocked domain and a dying one, which the captures do not show (tabs as xl prints).
XL_LIST = """Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0   768     2     r-----       5.2
sys-sec                                      1   512     1     -b----       1.0
work                                         2  1024     2     --p---       0.0
gone                                         3   128     1     ---s--       0.3
"""


def cfg(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in text.splitlines())}


def test_a_guest_is_a_pv_domain_built_without_vifs() -> None:
    spec = DomainSpec(name="work", kind="app", memory_mb=1024, vcpus=2, policy="vpn-only")
    c = cfg(xl_config(spec, IMAGE))
    assert c["name"] == '"work"' and c["type"] == '"pv"' and c["memory"] == "1024"
    assert c["vcpus"] == "2" and c["on_poweroff"] == '"destroy"'
    assert "hyperwall.kind=app" in c["extra"]
    # Its vif's addresses follow from the domid Xen gives at create: attached afterwards.
    assert "vif" not in c and "driver_domain" not in c


def test_a_guests_vif_is_attached_with_sys_sec_as_backend() -> None:
    addr = vif_addressing(7, 0)
    assert vif_spec(7, 0, "sys-sec") == ["backend=sys-sec", "devid=0", f"mac={addr.mac}",
                                         f"ip={addr.ip}", "script=vif-route"]


def test_sys_sec_is_the_driver_domain_and_boots_its_own_image() -> None:
    spec = DomainSpec(name="sys-sec", kind="sys-sec")
    images = GuestImages.in_folder(Path("/var/lib/hyperwall/xen"))
    c = cfg(xl_config(spec, images.for_spec(spec)))
    assert c["driver_domain"] == "1" and "vif" not in c
    assert c["ramdisk"] == '"/var/lib/hyperwall/xen/sys-sec.cpio"'
    assert images.for_spec(DomainSpec(name="family", kind="app")).ramdisk.name == "guest.cpio"


def test_a_value_that_would_break_the_file_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot go into an xl.cfg string"):
        xl_config(DomainSpec(name="work", kind="app"),
                  GuestImage(Path('/x"; kernel="/evil'), Path("/r")))


def test_xl_list_is_read_with_states() -> None:
    doms = {d.name: d for d in parse_xl_list(XL_LIST)}
    assert doms["Domain-0"].domid == 0 and doms["Domain-0"].state is RunState.RUNNING
    assert doms["sys-sec"].state is RunState.RUNNING       # blocked is running, idle
    assert doms["work"].state is RunState.PAUSED and doms["work"].memory_mb == 1024
    assert doms["gone"].state is RunState.SHUTDOWN


@pytest.mark.parametrize(("capture", "state"), [
    ("xl-list-paused.txt", RunState.PAUSED),       # xl create -p
    ("xl-list-running.txt", RunState.RUNNING),     # xl unpause
    ("xl-list-shutdown.txt", RunState.SHUTDOWN),   # xl shutdown, on_poweroff="preserve"
])
def test_real_xl_list_output_is_read(capture: str, state: RunState) -> None:
    doms = parse_xl_list((DATA / capture).read_text())
    assert [(d.name, d.domid, d.memory_mb, d.vcpus) for d in doms] == [
        ("Domain-0", 0, 768, 2), ("work", 1, 128, 1)]
    assert doms[0].state is RunState.RUNNING and doms[1].state is state


def test_an_unreadable_xl_list_line_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="cannot read 'garbage here'"):
        parse_xl_list(XL_LIST + "garbage here\n")
