"""Domain definitions: the standard set loads; every kind of mistake names file, key, reason."""
from pathlib import Path

import pytest

from dom0.config import (
    STANDARD_DIR,
    ConfigError,
    PersistEscape,
    load_config_dir,
    parse_domain,
    parse_duration,
    persist_path,
)


def test_standard_set_loads() -> None:
    specs = load_config_dir(STANDARD_DIR)
    assert set(specs) == {"sys-sec", "work", "family", "untrusted"}
    assert specs["sys-sec"].is_sys_sec
    assert specs["work"].policy == "vpn-only"
    assert specs["work"].autostart.probe_address == "10.99.0.10"
    assert specs["family"].users == ("child",)
    assert specs["untrusted"].kind == "disposable"
    family = specs["family"]
    assert family.persist == ("home/user/Documents", "home/user/Pictures")
    assert family.on_infection == "quarantine"
    assert family.scan_every == 6 * 3600
    assert specs["work"].on_infection == "alert" and specs["work"].scan_every is None


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('kind = "app"', "name", "missing"),
        ('name = "x"', "kind", "missing"),
        ('name = "x"\nkind = "vm"', "kind", "not one of"),
        ('name = "X y"\nkind = "app"', "name", "lowercase"),
        ('name = "x"\nkind = "app"\nmemory = "lots"', "memory", "expected int"),
        ('name = "x"\nkind = "app"\nmemory = true', "memory", "expected int"),
        ('name = "x"\nkind = "app"\nmemory = 1', "memory", "out of range"),
        ('name = "x"\nkind = "app"\npolicy = "anything"', "policy", "not one of"),
        ('name = "x"\nkind = "app"\ncolour = "red"', "colour", "unknown key"),
        ('name = "x"\nkind = "app"\nusers = ["ok", "Not OK"]', "users[1]", "not a valid"),
        ('name = "x"\nkind = "app"\nautostart = { probe_name = "a" }', "autostart", "go together"),
        ('name = "x"\nkind = "app"\nautostart = { when = 1 }', "autostart.when", "unknown"),
        ('name = "x"\nkind = "app"\nbackend = "kvm"', "backend", "not one of"),
        ('name = "x"\nkind = "app"\npersist = "Documents"', "persist", "expected list"),
        ('name = "x"\nkind = "app"\npersist = ["/etc"]', "persist[0]", "absolute"),
        ('name = "x"\nkind = "app"\npersist = ["a", "home/../../etc"]', "persist[1]", "'..'"),
        ('name = "x"\nkind = "app"\npersist = [""]', "persist[0]", "not a path"),
        ('name = "x"\nkind = "app"\npersist = [3]', "persist[0]", "not a path"),
        ('name = "x"\nkind = "app"\npersist = ["."]', "persist[0]", "whole tree"),
        ('name = "x"\nkind = "app"\npersist = ["a/", "a"]', "persist[1]", "twice"),
        ('name = "x"\nkind = "app"\non_infection = "panic"', "on_infection", "not one of"),
        ('name = "x"\nkind = "app"\nscan_every = 6', "scan_every", "expected str"),
        ('name = "x"\nkind = "app"\nscan_every = "6 hours"', "scan_every", "not a duration"),
        ('name = "x"\nkind = "app"\nscan_every = "10s"', "scan_every", "minimum"),
    ],
)
def test_bad_definition_names_key_and_reason(text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_domain(text, "work.toml")
    assert e.value.where == "work.toml"
    assert e.value.key == key
    assert reason in e.value.reason


def test_invalid_toml_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^bad\.toml: not valid TOML"):
        parse_domain("name = ", "bad.toml")


def test_one_bad_file_fails_the_whole_dir(tmp_path: Path) -> None:
    for f in STANDARD_DIR.glob("*.toml"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "zz.toml").write_text('name = "zz"\nkind = "app"\nvcpus = 0\n')
    with pytest.raises(ConfigError) as e:
        load_config_dir(tmp_path)
    assert e.value.where.endswith("zz.toml") and e.value.key == "vcpus"


def test_duplicate_names_and_sys_sec_count(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('name = "a"\nkind = "app"\n')
    with pytest.raises(ConfigError, match="exactly one sys-sec"):
        load_config_dir(tmp_path)
    (tmp_path / "b.toml").write_text('name = "a"\nkind = "sys-sec"\n')
    with pytest.raises(ConfigError, match="already defined"):
        load_config_dir(tmp_path)


def test_missing_dir() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_dir(Path("/nonexistent/hyperwall"))


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("6h", 21600),
                                               ("1d", 86400), (" 2h ", 7200)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "6", "-1h", "1.5h", "6w", "6H"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_persist_path_inside_the_tree(tmp_path: Path) -> None:
    (tmp_path / "home/user/Documents").mkdir(parents=True)
    assert persist_path(tmp_path, "family", "home/user/Documents") == \
        tmp_path / "home/user/Documents"
    # an entry that does not exist yet is fine: nothing to keep
    assert persist_path(tmp_path, "family", "home/user/Pictures") == \
        tmp_path / "home/user/Pictures"


@pytest.mark.parametrize("target", ["/etc", "../../..", "Documents-real"])
def test_persist_path_refuses_symlinks(tmp_path: Path, target: str) -> None:
    # the domain planted a link at a persist entry (or on its way): refused whatever its
    # target, even one inside the tree, since the domain can move it later
    (tmp_path / "home/user").mkdir(parents=True)
    (tmp_path / "home/user/Documents").symlink_to(target)
    with pytest.raises(PersistEscape) as e:
        persist_path(tmp_path, "family", "home/user/Documents/report.odt")
    assert "'family'" in str(e.value) and "home/user/Documents/report.odt" in str(e.value)
    assert "symlink" in str(e.value)


def test_persist_path_refuses_a_linked_parent(tmp_path: Path) -> None:
    (tmp_path / "home").symlink_to("/")
    with pytest.raises(PersistEscape, match="home is a symlink"):
        persist_path(tmp_path, "family", "home/user/Documents")
