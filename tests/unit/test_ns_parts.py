"""The ns backend's pieces that need no root: status parsing, the bwrap command line, and
cgroup files written into a fake cgroup root (v1 and v2 layouts)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dom0.backends._ns_cgroup import CgroupError, DomainCgroup, Limits, cpu_shares
from dom0.backends._ns_rootfs import (
    INIT,
    REPO,
    DomainDir,
    Status,
    bwrap_argv,
    host_ro_paths,
    overlay_options,
    parse_status,
)


def test_status_reads_pid_then_exit_code_and_skips_a_partial_line() -> None:
    assert parse_status("") == Status()
    text = '{ "child-pid": 42, "cgroup-namespace": 1 }\n{ "exit-code": 3 }\n{ "exi'
    assert parse_status(text) == Status(42, 3)
    assert parse_status('{ "child-pid": 7 }\n') == Status(7, None)


def test_bwrap_line_binds_root_xenstore_dir_and_runs_init(tmp_path: Path) -> None:
    d = DomainDir(tmp_path / "dom")
    argv = bwrap_argv(root=d.root, hostname="work", xenstore_dir=tmp_path / "xs", status_fd=5,
                      env={"HYPERWALL_NAME": "work"}, command=["sleep", "infinity"])
    pairs = list(zip(argv, argv[1:], strict=False))
    assert argv[:4] == ["bwrap", "--bind", str(d.root), "/"]
    assert ("--hostname", "work") in pairs and ("--json-status-fd", "5") in pairs
    xs = argv.index(str(tmp_path / "xs"))
    assert argv[xs - 1:xs + 2] == ["--bind", str(tmp_path / "xs"), "/var/run/xenstored"]
    # /run is a fresh tmpfs first, so the xenstore bind (under /var/run -> /run) lands in it.
    assert argv.index("/run") < xs
    assert argv[argv.index("--") + 1:] == [sys.executable, "-I", "-S", str(INIT),
                                           "sleep", "infinity"]
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--as-pid-1",
                 "--clearenv"):
        assert flag in argv
    assert ("--cap-drop", "ALL") in pairs and ("--cap-add", "CAP_SYS_ADMIN") not in pairs


def test_host_paths_are_read_only_parents_first_without_nested_twins() -> None:
    paths = host_ro_paths()
    assert paths[0] == Path("/usr")
    assert any(REPO.is_relative_to(p) for p in paths)
    assert any(Path(sys.base_prefix).is_relative_to(p) for p in paths)
    for i, p in enumerate(paths):
        assert not any(p.is_relative_to(q) for q in paths[:i])


def test_overlay_options(tmp_path: Path) -> None:
    d = DomainDir(tmp_path)
    assert overlay_options(Path("/t"), d) == \
        f"lowerdir=/t,upperdir={tmp_path}/upper,workdir={tmp_path}/work"


@pytest.mark.parametrize(("weight", "shares"), [(100, 1024), (50, 512), (1, 10), (10000, 102400)])
def test_weight_to_v1_shares(weight: int, shares: int) -> None:
    assert cpu_shares(weight) == shares


def test_v1_limits_go_to_each_controller(tmp_path: Path) -> None:
    cg = DomainCgroup(7, tmp_path)
    assert not cg.v2 and not cg.exists()
    cg.create(Limits(memory_bytes=64 << 20, cpu_weight=200, pids_max=50))
    leaf = "hyperwall/dom-7"
    assert (tmp_path / "memory" / leaf / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (tmp_path / "cpu" / leaf / "cpu.shares").read_text() == "2048"
    assert (tmp_path / "pids" / leaf / "pids.max").read_text() == "50"
    assert (tmp_path / "freezer" / leaf).is_dir() and cg.exists()
    (tmp_path / "freezer" / leaf / "freezer.state").write_text("THAWED")
    cg.freeze()
    assert (tmp_path / "freezer" / leaf / "freezer.state").read_text() == "FROZEN"
    assert cg.frozen()


def test_v2_enables_controllers_and_writes_one_group(tmp_path: Path) -> None:
    for d in (tmp_path, tmp_path / "hyperwall"):
        d.mkdir(exist_ok=True)
        (d / "cgroup.controllers").write_text("cpu memory pids\n")
    cg = DomainCgroup(8, tmp_path)
    cg.create(Limits(memory_bytes=1 << 30, cpu_weight=300))
    leaf = tmp_path / "hyperwall" / "dom-8"
    assert cg.dirs() == [leaf]
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (tmp_path / "hyperwall" / "cgroup.subtree_control").read_text() == \
        "+memory +cpu +pids"
    assert (leaf / "memory.max").read_text() == str(1 << 30)
    assert (leaf / "cpu.weight").read_text() == "300"
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    cg.freeze()
    assert (leaf / "cgroup.freeze").read_text() == "1" and cg.frozen()
    (leaf / "cgroup.procs").write_text("11\n12\n")
    assert cg.pids() == [11, 12]


def test_v2_says_which_controller_is_missing(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(CgroupError, match=r"controllers \['cpu'\] not available"):
        DomainCgroup(9, tmp_path).create(Limits(1 << 30, 100))
