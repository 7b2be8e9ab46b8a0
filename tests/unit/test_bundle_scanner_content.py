"""A bundle's clamav/ and yara/ members: the names sys-sec takes (ClamAV's database suffixes,
YARA's two), the ones it refuses by name (bytecode, dotted or misplaced files), YARA held to
its size and to UTF-8, and the builder refusing the same before a provider ships it."""
from __future__ import annotations

from pathlib import Path

import pytest

import netsec.bundle
from builder.bundle import BuildError, assemble, collect
from netsec.bundle import BundleError, check_name, verify
from netsec.clamav import DATABASE_SUFFIXES
from tests.bundle_helpers import KEY, NOW, RULE, make, trusted

BASE = {"rules/provider.rules": RULE.format(n=1).encode()}


def signed(files: dict[str, bytes]) -> bytes:
    return assemble({**BASE, **files}, key=KEY, provider="acme", version=2, created=NOW,
                    valid_days=30)


@pytest.mark.parametrize("name", [f"clamav/main{s}" for s in DATABASE_SUFFIXES]
                         + ["yara/local.yar", "yara/local.yara", "clamav/my-sigs_2.hdb"])
def test_scanner_content_names_are_taken(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize("name", ["clamav/code.cbc", "clamav/a.b.hdb", "clamav/.hdb",
                                  "clamav/x.yar", "yara/x.hdb", "yara/a.b.yar",
                                  "clamav/sub/x.hdb", "yara/x.txt"])
def test_other_names_in_those_folders_are_refused_by_name(name: str) -> None:
    with pytest.raises(BundleError, match=f"{name}: not a rules file.*ClamAV database"):
        check_name(name)


def test_a_bundle_with_both_verifies_and_yara_is_bounded_and_utf8() -> None:
    files = {"clamav/t.hdb": b"44d88612fea8a8f36de82e1278abb02f:68:T\n",
             "yara/t.yar": b"rule t { condition: false }\n"}
    b = verify(signed(files), trusted(), now=NOW, min_version=1)
    assert {n: b.files[n] for n in files} == files
    big = {"yara/big.yar": b"//" + b"x" * netsec.bundle.MAX_YARA_FILE}
    with pytest.raises(BundleError, match="yara/big.yar: .* over the .* limit"):
        verify(signed(big), trusted(), now=NOW, min_version=1)
    with pytest.raises(BundleError, match="yara/bad.yar"):
        verify(signed({"yara/bad.yar": b"rule \xff { condition: true }"}), trusted(),
               now=NOW, min_version=1)


def test_the_builder_takes_the_folders_and_refuses_what_sys_sec_would(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "p.rules").write_text(RULE.format(n=1))
    (tmp_path / "lists").mkdir()
    (tmp_path / "policy.toml").write_text("")
    (tmp_path / "clamav").mkdir()
    (tmp_path / "clamav" / "t.ndb").write_text("T:0:*:41424344454647\n")
    (tmp_path / "yara").mkdir()
    (tmp_path / "yara" / "t.yar").write_text("rule t { condition: false }\n")
    files = collect(tmp_path / "rules", tmp_path / "lists", tmp_path / "policy.toml", None,
                    tmp_path / "clamav", tmp_path / "yara")
    assert {"clamav/t.ndb", "yara/t.yar"} <= set(files)
    assert verify(make(tmp_path, version=2), trusted(), now=NOW, min_version=1)
    (tmp_path / "clamav" / "code.cbc").write_bytes(b"bytecode")
    with pytest.raises(BuildError, match="clamav/code.cbc"):
        make(tmp_path, version=3)
    (tmp_path / "clamav" / "code.cbc").unlink()
    (tmp_path / "yara" / "bad.yar").write_text("rule bad { condition: nosuchthing }\n")
    with pytest.raises(BuildError, match="bad.yar"):
        make(tmp_path, version=3)
