"""The simulated internet that `make demo` and the end-to-end tests plug into sys-sec's
uplink, built and torn down whole.

    sys-sec: uplink0 198.51.100.2/24 --veth-- sec0 198.51.100.1/24 :<prefix>-inet
    <prefix>-inet holds every server address on its loopback and runs dom0.simnet_servers:
      DNS (authoritative for ZONE) on :53 of every address, HTTP on :80, HTTPS on :443

192.0.2.53 plays a public resolver (a guest trying to bypass sys-sec's), 192.168.1.10 a
host on the local network (what only `lan` guests may reach). Certificates come from a CA
made for the occasion.
"""
from __future__ import annotations

import datetime as dt
import json
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROUTER, UPLINK_IP = "198.51.100.1", "198.51.100.2"
PUBLIC_RESOLVER = "192.0.2.53"
LAN_HOST = "192.168.1.10"
ZONE = {
    "allowed.example": "203.0.113.10",
    "news.example": "203.0.113.11",
    "adult.example": "203.0.113.12",
    "www.adult.example": "203.0.113.12",
    "malware.example": "203.0.113.13",
    "ads.example": "203.0.113.14",
    "dns.google": "203.0.113.53",
    "printer.lan": LAN_HOST,
}
READY_TIMEOUT = 20.0


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"simnet: `{' '.join(argv)}` failed: {done.stderr.strip()}")


def make_certificates(names: list[str], out: Path) -> None:
    """One certificate (with its key, PEM) per name, signed by a throwaway CA."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hyperwall simnet CA")])
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                .sign(ca_key, hashes.SHA256()))
        (out / f"{name}.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))


class SimNet:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.inet = f"{prefix}-inet"
        self.dir = Path(tempfile.mkdtemp(prefix="hwsim-"))
        self.server: subprocess.Popen[str] | None = None

    def plug(self, sys_sec_netns: str) -> SimNet:
        """Build the world and plug it into sys-sec's namespace as its uplink."""
        try:
            self._build(sys_sec_netns)
        except BaseException:
            self.close()
            raise
        return self

    def _build(self, sys_sec: str) -> None:
        _run("ip", "netns", "add", self.inet)
        _run("ip", "-n", self.inet, "link", "set", "lo", "up")
        _run("ip", "link", "add", "sec0", "netns", self.inet, "type", "veth",
             "peer", "name", "uplink0", "netns", sys_sec)
        for ns, dev, addr in ((self.inet, "sec0", ROUTER), (sys_sec, "uplink0", UPLINK_IP)):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", sys_sec, "route", "replace", "default", "via", ROUTER)
        for addr in {*ZONE.values(), PUBLIC_RESOLVER}:
            _run("ip", "-n", self.inet, "addr", "add", f"{addr}/32", "dev", "lo")
        (self.dir / "zone.json").write_text(json.dumps(ZONE))
        certs = self.dir / "certs"
        certs.mkdir()
        make_certificates(sorted(ZONE), certs)
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.inet, sys.executable, "-m", "dom0.simnet_servers",
             str(self.dir / "zone.json"), str(certs)],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.server.stdout is not None
        ready, _, _ = select.select([self.server.stdout], [], [], READY_TIMEOUT)
        if not ready or self.server.stdout.readline().strip() != "ready":
            raise RuntimeError("simnet: the servers did not start")

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait()
        # Deleting the namespace takes the veth pair with it, sys-sec's end included.
        subprocess.run(["ip", "netns", "delete", self.inet], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
