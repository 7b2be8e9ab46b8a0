"""builder/xen_guest.py's pure parts: which kernel modules and which Python files go into
a Xen guest's image (the images themselves boot in tests/xen and the Xen smoke test)."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from builder.xen_guest import (
    GUEST,
    REPO,
    SYS_SEC,
    GuestBuildError,
    module_closure,
    python_tree,
    traced_files,
)

NF = "kernel/net/netfilter"
DEP = f"""{NF}/nft_compat.ko: {NF}/nf_tables.ko kernel/lib/libcrc32c.ko
{NF}/nf_tables.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/drivers/net/xen-netback/xen-netback.ko:
kernel/drivers/net/tun.ko:
kernel/sound/snd.ko:
"""


def test_modules_are_the_named_ones_those_under_the_folders_and_their_dependencies(
        tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(DEP)
    assert module_closure(tmp_path, ["xen_netback"], ["kernel/net/netfilter"]) == [
        "kernel/drivers/net/xen-netback/xen-netback.ko", "kernel/lib/libcrc32c.ko",
        "kernel/net/netfilter/nf_tables.ko", "kernel/net/netfilter/nft_compat.ko"]


def test_a_module_the_kernel_does_not_have_is_named(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(DEP)
    with pytest.raises(GuestBuildError, match="kernel module xen-netfront is not in"):
        module_closure(tmp_path, ["xen-netfront"], [])


def _tops(kind) -> set[str]:  # type: ignore[no-untyped-def]
    site = Path(sysconfig.get_paths()["purelib"])
    return {p.name for p in python_tree(traced_files(kind.entry)) if p.parent == site}


def test_a_guest_carries_what_the_agent_imports_and_not_the_security_domains_stack() -> None:
    tops = _tops(GUEST)
    assert "pyxs" in tops
    assert not {"grpc", "cryptography", "tuf", "hyperscan"} & tops


def test_sys_sec_carries_the_engine_and_its_services_but_no_build_tools() -> None:
    tree = python_tree(traced_files(SYS_SEC.entry))
    tops = {p.name for p in tree}
    assert {"pyxs", "grpc", "cryptography", "tuf"} <= tops
    assert "grpc_tools" not in tops and "pytest" not in tops and "_pytest" not in tops
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    # The standard library whole (its lazy imports), but not its tests or tools.
    assert stdlib / "stringprep.py" in tree and stdlib / "encodings" in tree
    assert stdlib / "test" not in tree and stdlib / "idlelib" not in tree


def test_a_guest_that_would_import_dom0s_toolstack_is_refused() -> None:
    with pytest.raises(GuestBuildError, match="a guest imports dom0/toolstack/lifecycle.py"):
        python_tree([REPO / "dom0" / "toolstack" / "lifecycle.py"])
