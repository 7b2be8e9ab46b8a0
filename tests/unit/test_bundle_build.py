"""hyperwall-build: bundles reproducible byte for byte, inputs sys-sec would refuse refused
at build time with the file named, keys never overwritten, publish refusing what clients
would refuse. Drives builder.cli.main in-process; one test runs the installed scripts."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from builder.cli import main
from tests.bundle_helpers import RULE

BIN = Path(sys.executable).parent


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "b.rules").write_text(RULE.format(n=2))
    (tmp_path / "rules" / "a.rules").write_text(RULE.format(n=1))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "ads.txt").write_text("0.0.0.0 ads.example\n||track.example^\n")
    (tmp_path / "policy.toml").write_text('[schedules]\nads = ["daily 20:00-07:00"]\n')
    assert main(["keygen", "-o", "acme.key"]) == 0
    return tmp_path


@pytest.fixture
def build(work: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def call(*extra: str, version: str = "1", out: str = "out.bundle") -> tuple[int, str, str]:
        code = main(["bundle", "--rules", "rules", "--lists", "lists", "--policy",
                     "policy.toml", "--key", "acme.key", "--version", version, "-o", out,
                     *extra])
        o, e = capsys.readouterr()
        return code, o, e
    return call


def test_the_same_inputs_give_the_same_bytes(work: Path, build: Callable[..., tuple]) -> None:
    assert build(out="one.bundle")[0] == 0
    assert build(out="two.bundle")[0] == 0
    one = (work / "one.bundle").read_bytes()
    assert one == (work / "two.bundle").read_bytes()
    assert build("--created", "2026-01-01T00:00:00", out="three.bundle")[0] == 0
    assert (work / "three.bundle").read_bytes() != one      # created is in the manifest
    with tarfile.open(fileobj=io.BytesIO(one)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == ["manifest.json", "signatures.json", "lists/ads.txt",
                                       "policy.toml", "rules/a.rules", "rules/b.rules"]
    assert {(i.mtime, i.uid, i.gid, i.mode, i.uname) for i in infos} == {(0, 0, 0, 0o644, "")}


def test_the_manifest_lists_every_file(work: Path, build: Callable[..., tuple]) -> None:
    code, out, _ = build("--json", "--expires", "10")
    m = json.loads(out)
    assert code == 0 and (m["provider"], m["version"]) == ("acme", 1)
    assert m["created"] == "2026-09-21T14:13:20+00:00"
    assert m["expires"] == "2026-10-01T14:13:20+00:00"
    assert m["files"]["rules/a.rules"]["size"] == len(RULE.format(n=1))
    code, out, _ = build()
    assert "rules/a.rules" in out and "SHA-256" in out


@pytest.mark.parametrize(("change", "args", "reason"), [
    (lambda w: None, ["--rules", "missing"], "missing: no such file or folder"),
    (lambda w: (w / "empty").mkdir(), ["--rules", "empty"], "empty: no .rules files"),
    (lambda w: (w / "lists" / "ads.txt").write_text("! nothing\nnot a domain line x\n"), [],
     "lists/ads.txt: no domain in it (1 lines skipped"),
    (lambda w: (w / "lists" / "Ads.txt").write_text("a.example\n"), [],
     "sys-sec would refuse this bundle: lists/Ads.txt: not a rules file"),
    (lambda w: (w / "policy.toml").write_text('[domains.family]\npolicy = "internet"\n'), [],
     "'domains' is not the provider's to set"),
    (lambda w: (w / "policy.toml").write_text('[schedules]\ngames = ["daily 20:00-07:00"]\n'),
     [], "'games': not a category the bundle ships"),
    (lambda w: (w / "policy.toml").write_text('[schedules]\nads = ["weekdays 9-5"]\n'), [],
     "'ads': time window 'weekdays 9-5'"),
    (lambda w: None, ["--version", str(1 << 64)], "version 18446744073709551616: over"),
    (lambda w: None, ["--expires", "400"], "--expires 400: over the 366-day"),
    (lambda w: None, ["--version", "0"], "version 0: bundle versions start at 1"),
    (lambda w: None, ["--key", "acme.pub"], "acme.pub: not a PEM private key"),
    (lambda w: (w / "rsa.key").write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())), ["--key", "rsa.key"], "rsa.key: not an Ed25519 key"),
    (lambda w: None, ["--created", "yesterday"], "--created / SOURCE_DATE_EPOCH"),
])
def test_bad_inputs_are_refused_and_nothing_is_written(
        work: Path, capsys: pytest.CaptureFixture[str],
        change: Callable[[Path], object], args: list[str], reason: str) -> None:
    change(work)
    base = {"--rules": "rules", "--lists": "lists", "--policy": "policy.toml",
            "--key": "acme.key", "--version": "1"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = ["bundle", *(x for kv in base.items() for x in kv), "-o", "out.bundle"]
    assert main(argv) == 1
    assert reason in capsys.readouterr().err
    assert not (work / "out.bundle").exists()
    assert main(["--json", *argv]) == 1
    assert reason in json.loads(capsys.readouterr().out)["error"]["message"]


def test_keygen_makes_a_private_key_only_root_reads_and_never_overwrites(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stat.S_IMODE((work / "acme.key").stat().st_mode) == 0o600
    before = (work / "acme.key").read_bytes()
    assert main(["keygen", "-o", "acme.key"]) == 1
    assert "a key is already there" in capsys.readouterr().err
    assert (work / "acme.key").read_bytes() == before


def test_publish_refuses_what_clients_would_refuse(
        work: Path, build: Callable[..., tuple], capsys: pytest.CaptureFixture[str]) -> None:
    fresh = ["--created", dt.datetime.now(dt.UTC).isoformat()]   # publish checks expiry
    build(*fresh, version="2", out="v2.bundle")
    build(*fresh, version="1", out="v1.bundle")
    publish = ["publish", "--repo", "repo", "--keys", "keys", "--key", "acme.key"]
    assert main([*publish, "v2.bundle"]) == 0
    assert "bundle - -> 2" in capsys.readouterr().out
    assert sorted(p.name for p in (work / "keys").glob("*.key")) == [
        "root.key", "snapshot.key", "timestamp.key"]
    assert main([*publish, "v1.bundle"]) == 1
    assert "bundle 1 is not newer than the 2 repo serves" in capsys.readouterr().err
    assert main(["keygen", "-o", "other.key"]) == 0
    capsys.readouterr()
    assert main(["publish", "--repo", "repo", "--keys", "keys", "--key", "other.key",
                 "v2.bundle"]) == 1
    assert "not a key the owner enrolled" in capsys.readouterr().err
    (work / "junk.bundle").write_bytes(b"junk")
    assert main([*publish, "junk.bundle"]) == 1
    assert "not a readable bundle" in capsys.readouterr().err


def test_template_reports_progress(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["template", "-o", "tpl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[1] ") and "template ready at tpl" in out
    assert main(["--json", "template", "-o", "tpl"]) == 1
    assert "already exists" in json.loads(capsys.readouterr().out)["error"]["message"]


def test_the_installed_scripts_run(work: Path) -> None:
    env = {**os.environ, "HYPERWALL_PROVIDER_DIR": str(work / "store")}
    done = subprocess.run([str(BIN / "hyperwall-build"), "--json", "bundle", "--rules", "rules",
                           "--key", "acme.key", "--version", "3", "-o", "s.bundle"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["version"] == 3, done.stderr
    done = subprocess.run([str(BIN / "hyperwall"), "provider", "enroll", "--bundle-key",
                           "acme.pub"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "enrolled" in done.stdout, done.stderr
