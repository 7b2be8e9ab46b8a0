"""Domain definitions: the standard set loads; every kind of mistake names file, key, reason."""
from pathlib import Path

import pytest

from dom0.config import STANDARD_DIR, ConfigError, load_config_dir, parse_domain


def test_standard_set_loads() -> None:
    specs = load_config_dir(STANDARD_DIR)
    assert set(specs) == {"sys-sec", "work", "family", "untrusted"}
    assert specs["sys-sec"].is_sys_sec
    assert specs["work"].policy == "vpn-only"
    assert specs["work"].autostart.probe_address == "10.99.0.10"
    assert specs["family"].users == ("child",)
    assert specs["untrusted"].kind == "disposable"


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
