"""The xenstore layout matches what libxl writes: paths, owners, who may read."""
from dom0.config import DomainSpec
from dom0.layout import domain_nodes, vif_addressing, vif_nodes

SPEC = DomainSpec(name="work", kind="app", memory_mb=1024, vcpus=2, policy="vpn-only")


def nodes_by_path(nodes):  # type: ignore[no-untyped-def]
    return {n.path: n for n in nodes}


def test_domain_layout_paths_and_perms() -> None:
    nodes = nodes_by_path(domain_nodes(7, "u-u-i-d", SPEC))
    assert nodes["/local/domain/7"].perms == ("n0", "r7")
    assert nodes["/local/domain/7/name"].value == "work"
    assert nodes["/local/domain/7/domid"].value == "7"
    assert nodes["/local/domain/7/vm"].value == "/vm/u-u-i-d"
    assert nodes["/vm/u-u-i-d"].perms == ("n0", "r7")
    assert nodes["/libxl/7"].perms == ("n0",)
    for guest_owned in ("control/shutdown", "data", "error", "drivers", "attr", "feature"):
        assert nodes[f"/local/domain/7/{guest_owned}"].perms == ("n7",), guest_owned
    for dom0_owned in ("control", "device", "memory", "cpu", "hyperwall"):
        assert nodes[f"/local/domain/7/{dom0_owned}"].perms == ("n0", "r7"), dom0_owned
    assert nodes["/local/domain/7/memory/target"].value == str(1024 * 1024)
    assert "/local/domain/7/cpu/1/availability" in nodes
    assert nodes["/local/domain/7/hyperwall/policy"].value == "vpn-only"


def test_parents_come_before_children() -> None:
    # A node created without perms inherits its nearest existing ancestor's, so that
    # ancestor must already be written when the node is.
    nodes = domain_nodes(3, "x", SPEC) + vif_nodes(3, 1, 0, "internet", name="guest")
    listed = {n.path for n in nodes}
    seen: set[str] = set()
    for n in nodes:
        ancestors = [a for a in listed if n.path.startswith(a + "/")]
        if ancestors:
            nearest = max(ancestors, key=len)
            assert nearest in seen, f"{n.path} is written before its ancestor {nearest}"
        seen.add(n.path)


def test_vif_layout_like_libxl() -> None:
    nodes = nodes_by_path(vif_nodes(5, 1, 0, "filtered", name="guest"))
    fe, be = "/local/domain/5/device/vif/0", "/local/domain/1/backend/vif/5/0"
    assert nodes[fe].perms == ("n5", "r1")
    assert nodes[be].perms == ("n1", "r5")
    assert nodes[f"{fe}/backend"].value == be and nodes[f"{be}/frontend"].value == fe
    assert nodes[f"{fe}/state"].value == nodes[f"{be}/state"].value == "1"
    assert nodes[f"{be}/frontend-id"].value == "5" and nodes[f"{fe}/backend-id"].value == "1"
    assert nodes[f"{be}/ip"].value == vif_addressing(5, 0).ip
    assert nodes[f"{be}/hyperwall/policy"].value == "filtered"
    assert nodes[f"{be}/hyperwall/name"].value == "guest"


def test_addresses_are_unique_per_domid() -> None:
    ips = {vif_addressing(d, 0).ip for d in range(1, 3000)}
    macs = {vif_addressing(d, 0).mac for d in range(1, 3000)}
    assert len(ips) == len(macs) == 2999
    assert vif_addressing(1, 0).gateway not in ips
