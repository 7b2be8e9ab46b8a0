"""hyperwall-build (keygen, bundle, template) and hyperwall provider, as console commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "HYPERWALL_STATE_DIR": str(tmp_path / "state"),
                               **env}, timeout=60)


def test_bundles_are_reproducible_and_bad_inputs_are_named(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.rules").write_text(
        'alert http any any -> any any (msg:"x"; content:"zz"; sid:7; rev:1;)\n')
    assert run(tmp_path, str(BIN / "hyperwall-build"), "keygen", "-o", "p.key").returncode == 0
    for out in ("b1", "b2"):
        done = run(tmp_path, str(BIN / "hyperwall-build"), "bundle", "--rules", "rules",
                   "--key", "p.key", "--provider", "acme", "--version", "1", "-o", out,
                   SOURCE_DATE_EPOCH="1700000000")
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "b1").read_bytes() == (tmp_path / "b2").read_bytes()
    done = run(tmp_path, str(BIN / "hyperwall-build"), "bundle", "--rules", "missing",
               "--key", "p.key", "--provider", "a", "--version", "1", "-o", "x")
    assert done.returncode == 1 and "missing: no such file or folder" in done.stderr
    done = run(tmp_path, str(BIN / "hyperwall-build"), "bundle", "--rules", "rules",
               "--key", "p.key.pub", "--provider", "a", "--version", "1", "-o", "x")
    assert done.returncode == 1 and "p.key.pub" in done.stderr
    done = run(tmp_path, str(BIN / "hyperwall-build"), "template", "-o", "tpl")
    assert done.returncode == 0 and "template ready" in done.stdout
    assert (tmp_path / "tpl" / "etc" / "passwd").exists()


def test_provider_enroll_status_revoke(tmp_path: Path) -> None:
    hw = str(BIN / "hyperwall")
    run(tmp_path, str(BIN / "hyperwall-build"), "keygen", "-o", "p.key")
    bad = run(tmp_path, hw, "--json", "provider", "enroll", "--name", "acme",
              "--bundle-key", "p.key")
    assert bad.returncode == 1 and "not a PEM public key" in json.loads(bad.stdout)["error"][
        "message"]
    missing = run(tmp_path, hw, "provider", "enroll", "--name", "acme", "--bundle-key", "no.pub")
    assert missing.returncode == 1 and "no.pub" in missing.stdout
    status = run(tmp_path, hw, "--json", "provider", "status")
    assert json.loads(status.stdout)["status"] == "no provider enrolled"
    good = run(tmp_path, hw, "provider", "enroll", "--name", "acme", "--bundle-key", "p.pub")
    assert good.returncode == 0 and "acme (enrolled)" in good.stdout
    revoked = run(tmp_path, hw, "--json", "provider", "revoke")
    assert json.loads(revoked.stdout)["status"] == "revoked"
