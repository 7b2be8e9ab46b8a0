"""The owner's trust store (netsec/trust.py) and `hyperwall provider enroll|revoke|status`:
what is enrolled is what verifies; bad input is refused with its reason and leaves the store
byte for byte as it was."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from builder.tuf_repo import publish
from dom0.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from dom0.cli.main import run
from netsec.bundle import key_id, verify
from netsec.trust import ENV_DIR, TrustError, TrustStore, default_dir
from tests.bundle_helpers import KEY, NOW, OTHER, RULE, make, public_pem


def _bundle_inputs(where: Path) -> Path:
    (where / "rules").mkdir(parents=True)
    (where / "rules" / "p.rules").write_text(RULE.format(n=1))
    (where / "lists").mkdir()
    (where / "policy.toml").write_text("")
    return where


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A provider's files as an owner receives them: its TUF root, a CA, a bundle."""
    d = tmp_path_factory.mktemp("provider")
    bundle = make(_bundle_inputs(d / "in"))
    publish(d / "repo", KEY, bundle, now=NOW, keys_dir=d / "keys")
    (d / "bundle").write_bytes(bundle)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme provider CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(ca_key.public_key()).serial_number(1)
            .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=365))
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (d / "rsa.pub").write_bytes(rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (d / "ed.key").write_bytes(KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (d / "ed.pub").write_bytes(public_pem(KEY))
    (d / "other.pub").write_bytes(public_pem(OTHER))
    (d / "root.json").write_bytes((d / "repo" / "metadata" / "1.root.json").read_bytes())
    (d / "timestamp.json").write_bytes((d / "repo" / "metadata" / "timestamp.json").read_bytes())
    forged = json.loads((d / "root.json").read_text())
    forged["signed"]["expires"] = "2099-01-01T00:00:00Z"
    (d / "forged-root.json").write_text(json.dumps(forged))
    (d / "notjson").write_text("{ this is not json")
    return {p.name: p for p in d.iterdir()}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the store --------------------------------------------------------------------------

def test_enrolling_the_root_pins_the_bundle_key(provider: dict[str, Path], tmp_path: Path) -> None:
    trust = TrustStore(tmp_path / "store")
    state = trust.enroll(provider["root.json"].read_bytes())
    assert state.enrolled and not trust.load().revoked and trust.last_version == 0
    keys = trust.trusted_keys()
    assert list(keys.keys) == [key_id(KEY.public_key())] and keys.threshold == 1
    assert trust.root_json() == provider["root.json"].read_bytes()
    assert verify(provider["bundle"].read_bytes(), keys, now=NOW, min_version=0).version == 1


def test_applied_versions_only_go_up_and_revocation_cuts_off(
        provider: dict[str, Path], tmp_path: Path) -> None:
    trust = TrustStore(tmp_path / "store")
    trust.enroll(provider["root.json"].read_bytes(), ca_pem=provider["ca.pem"].read_bytes())
    trust.record_applied(5)
    trust.record_applied(3)
    assert trust.last_version == 5
    trust.revoke()
    assert trust.load().revoked and trust.trusted_keys().keys == {}
    assert trust.provider_ca() == provider["ca.pem"].read_bytes()   # kept for the record
    # Enrolling the same keys again lifts the revocation and keeps the version (no rollback).
    trust.enroll(provider["root.json"].read_bytes())
    assert not trust.load().revoked and trust.last_version == 5
    assert trust.provider_ca() is None     # the new enrollment gave no CA: none is trusted
    # Another provider's keys: its own numbering, and the old key is gone from the folder.
    trust.update(disabled_sids=[7, 9], share_alerts=True)
    trust.enroll(None, [public_pem(OTHER)], provider="other")
    assert trust.last_version == 0 and trust.root_json() is None
    # the rules switched off and what the owner shares outlive any enrollment
    assert (trust.load().disabled_sids, trust.load().share_alerts) == ([7, 9], True)
    assert [p.stem for p in (trust.path / "keys").glob("*.pub")] == [key_id(OTHER.public_key())]


def test_a_threshold_of_several_keys(tmp_path: Path) -> None:
    trust = TrustStore(tmp_path / "store")
    trust.enroll(None, [public_pem(KEY), public_pem(OTHER)], threshold=2)
    assert trust.trusted_keys().threshold == 2 and len(trust.trusted_keys().keys) == 2


BAD_ENROLLMENTS: list[tuple[str, Callable[[dict[str, Path]], tuple], str]] = [
    ("not json", lambda p: (p["notjson"].read_bytes(),), "root.json: not TUF root metadata"),
    ("not a root", lambda p: (p["timestamp.json"].read_bytes(),), "timestamp metadata, not root"),
    ("forged root", lambda p: (p["forged-root.json"].read_bytes(),),
     "root.json: not signed by its own root keys"),
    ("private key", lambda p: (None, [p["ed.key"].read_bytes()]), "bundle key 1: not a PEM "
     "public key"),
    ("rsa key", lambda p: (None, [p["rsa.pub"].read_bytes()]), "bundle key 1: a RSAPublicKey, "
     "but bundles are signed with Ed25519 keys"),
    ("garbage key", lambda p: (None, [b"ssh-ed25519 AAAA"]), "not a PEM public key"),
    ("bad ca", lambda p: (p["root.json"].read_bytes(), [], b"-----BEGIN nothing"),
     "provider CA: not a PEM certificate"),
    ("nothing", lambda p: (None, []), "no bundle-signing key"),
    ("huge root", lambda p: (b" " * (2 << 20),), "too big"),
    ("deep root", lambda p: (b"[" * 50_000 + b"]" * 50_000,), "root.json: nested deeper than"),
]


@pytest.mark.parametrize(("given", "reason"), [c[1:] for c in BAD_ENROLLMENTS],
                         ids=[c[0] for c in BAD_ENROLLMENTS])
def test_bad_enrollments_change_nothing(provider: dict[str, Path], tmp_path: Path,
                                        given: Callable[[dict[str, Path]], tuple],
                                        reason: str) -> None:
    trust = TrustStore(tmp_path / "store")
    trust.enroll(provider["root.json"].read_bytes(), ca_pem=provider["ca.pem"].read_bytes())
    trust.record_applied(4)
    before = snapshot(trust.path)
    with pytest.raises(TrustError, match=reason):
        trust.enroll(*given(provider))
    with pytest.raises(TrustError, match="threshold 3 cannot be met by 1 key"):
        trust.enroll(provider["root.json"].read_bytes(), threshold=3)
    assert snapshot(trust.path) == before


def test_a_damaged_state_file_is_named(tmp_path: Path) -> None:
    trust = TrustStore(tmp_path)
    trust.state_file.write_text('{"threshold": "two"}')
    with pytest.raises(TrustError, match="state.json: threshold has the wrong type"):
        trust.load()
    trust.state_file.write_text("{")
    with pytest.raises(TrustError, match="state.json: unreadable"):
        trust.trusted_keys()


@pytest.mark.parametrize("record", [1 << 64, -1, "five", True, 2.5, None])
def test_a_recorded_version_that_is_none_stops_bundles_until_the_owner_enrolls(
        tmp_path: Path, record: object) -> None:
    trust = TrustStore(tmp_path)
    trust.enroll(None, [public_pem(KEY)], provider="acme")
    trust.record_applied(4)
    state = json.loads(trust.state_file.read_text())
    trust.state_file.write_text(json.dumps({**state, "last_version": record}))
    loaded = trust.load()   # the rest of the state still holds: enrolled, and revocable
    assert (loaded.enrolled, loaded.keys, loaded.last_version) == (True, state["keys"], None)
    assert trust.version_problem(loaded) == (
        f"{trust.state_file}: last_version {json.dumps(record)} is not a bundle version (an "
        f"integer from 0 to {(1 << 64) - 1}), so which bundles would be a rollback is "
        "unknown; no bundle applies until the owner enrolls the provider again (hyperwall "
        "provider enroll), which starts the count over")
    trust.update(share_alerts=True)     # another change keeps the bad record as found
    assert json.loads(trust.state_file.read_text())["last_version"] == record
    assert trust.enroll(None, [public_pem(KEY)]).last_version == 0
    assert trust.version_problem(trust.load()) == "" and trust.load().share_alerts


def test_enrolling_over_an_unreadable_state_file_keeps_it_beside(tmp_path: Path) -> None:
    trust = TrustStore(tmp_path)
    trust.state_file.write_text('{"last_version": 4, "revoked": tr')
    state = trust.enroll(None, [public_pem(KEY)], provider="acme")
    assert (state.enrolled, state.revoked, state.last_version) == (True, False, 0)
    assert (tmp_path / "state.json.unreadable").read_text() == \
        '{"last_version": 4, "revoked": tr'


def test_the_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    assert default_dir() == Path("/var/lib/hyperwall/sys-sec/provider")
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    assert TrustStore().path == tmp_path


# -- hyperwall provider ------------------------------------------------------------------

@pytest.fixture
def hw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
       capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "store"))

    def call(*argv: str) -> tuple[int, str, str]:
        code = run(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return call


def test_enroll_status_revoke(hw: Callable[..., tuple[int, str, str]],
                              provider: dict[str, Path]) -> None:
    code, out, _ = hw("provider", "status")
    assert code == EXIT_OK and "Status          not enrolled" in out
    code, out, err = hw("provider", "enroll", "--root", str(provider["root.json"]), "--ca",
                        str(provider["ca.pem"]), "--name", "acme", "--share-alerts")
    assert code == EXIT_OK, err
    assert "enrolled acme" in out and key_id(KEY.public_key()) in out
    assert "CN=acme provider CA" in out and "Shares alerts   yes" in out
    code, out, _ = hw("provider", "status", "--json")
    status = json.loads(out)
    assert status["status"] == "enrolled" and status["tuf_root"]["version"] == 1
    assert status["bundle_keys"] == [key_id(KEY.public_key())] and status["threshold"] == 1
    code, out, _ = hw("--json", "provider", "revoke")
    assert code == EXIT_OK and json.loads(out)["status"] == "revoked"
    code, out, _ = hw("provider", "status")
    assert "Status          revoked" in out


def test_status_names_a_recorded_version_that_is_none(
        hw: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    trust = TrustStore(tmp_path / "store")
    trust.enroll(None, [public_pem(KEY)], provider="acme")
    state = json.loads(trust.state_file.read_text())
    trust.state_file.write_text(json.dumps({**state, "last_version": 1 << 64}))
    code, out, _ = hw("provider", "status")
    assert code == EXIT_OK and "Status          enrolled" in out
    assert f"Applied bundle  {trust.state_file}: last_version {1 << 64} is not a bundle " \
        "version" in out
    code, out, _ = hw("provider", "status", "--json")
    got = json.loads(out)
    assert got["last_version"] is None and "hyperwall provider enroll" in got["version_problem"]


@pytest.mark.parametrize(("argv", "reason"), [
    (["--root", "missing.json"], "--root missing.json: No such file or directory"),
    (["--root", "{notjson}"], "root.json: not TUF root metadata"),
    (["--bundle-key", "{rsa.pub}"], "a RSAPublicKey, but bundles are signed with Ed25519"),
    (["--bundle-key", "{ed.key}"], "not a PEM public key"),
    (["--root", "{root.json}", "--ca", "{ed.pub}"], "provider CA: not a PEM certificate"),
])
def test_bad_enroll_input_is_refused_and_changes_nothing(
        hw: Callable[..., tuple[int, str, str]], provider: dict[str, Path], tmp_path: Path,
        argv: list[str], reason: str) -> None:
    assert hw("provider", "enroll", "--bundle-key", str(provider["other.pub"]))[0] == EXIT_OK
    before = snapshot(tmp_path / "store")
    args = [str(provider[a[1:-1]]) if a.startswith("{") else a for a in argv]
    code, out, err = hw("provider", "enroll", *args)
    assert code == EXIT_ERROR and reason in err and out == ""
    code, out, _ = hw("--json", "provider", "enroll", *args)
    assert code == EXIT_ERROR and reason in json.loads(out)["error"]["message"]
    assert snapshot(tmp_path / "store") == before


def test_usage_errors(hw: Callable[..., tuple[int, str, str]], provider: dict[str, Path]) -> None:
    code, _, err = hw("provider", "enroll")
    assert code == EXIT_USAGE and "enroll needs the provider's --root" in err
    code, _, err = hw("provider", "status", "--root", str(provider["root.json"]))
    assert code == EXIT_USAGE and "--root: only for `hyperwall provider enroll`" in err
    code, _, err = hw("provider", "revoke")
    assert code == EXIT_ERROR and "no provider is enrolled; nothing to revoke" in err
