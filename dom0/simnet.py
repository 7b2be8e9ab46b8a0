"""The simulated internet that `make demo` and the end-to-end tests plug into sys-sec's
uplink, built and torn down whole.

    sys-sec: uplink0 198.51.100.2/24 --veth-- sec0 198.51.100.1/24 :<prefix>-inet
    <prefix>-inet holds every server address on its loopback and runs dom0.simnet_servers:
      DNS (authoritative for ZONE) on :53 of every address, HTTP on :80, HTTPS on :443

    <prefix>-corp: the corporate network, 10.200.0.0/16 (the intranet server 10.200.0.10),
      reachable only through its WireGuard server at 203.0.113.202:51820 (wireguard-go);
      `vpn_settings()` is sys-sec's side of the tunnel

192.0.2.53 plays a public resolver (a guest trying to bypass sys-sec's), 192.168.1.10 a
host on the local network (what only `lan` guests may reach). Certificates come from a CA
made for the occasion.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
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
CORP_RANGE, INTRANET = "10.200.0.0/16", "10.200.0.10"
CORP_WAN, CORP_GW, WG_PORT = "203.0.113.202", "203.0.113.201", 51820
TUNNEL_SERVER, TUNNEL_CLIENT = "10.200.1.1", "10.200.1.2"
STATIC_SERVER = """
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), handler)
print("ready", flush=True)
server.serve_forever()
"""


def wg_keypair() -> tuple[str, str]:
    key = x25519.X25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    private = key.private_bytes(raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


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
        self.corp = f"{prefix}-corp"
        # wireguard-go's control sockets share /var/run/wireguard across namespaces.
        self.wg_iface = f"wgc{prefix[-8:]}"
        self.dir = Path(tempfile.mkdtemp(prefix="hwsim-"))
        self.processes: list[subprocess.Popen[str]] = []
        self.server_key, self.server_pub = wg_keypair()
        self.client_key, self.client_pub = wg_keypair()

    def vpn_settings(self) -> str:
        """sys-sec's [vpn] settings (syssec.toml) for this world's corporate network."""
        return (f'[vpn]\nprivate_key = "{self.client_key}"\n'
                f'peer_public_key = "{self.server_pub}"\nendpoint = "{CORP_WAN}:{WG_PORT}"\n'
                f'address = "{TUNNEL_CLIENT}/32"\nroutes = ["{CORP_RANGE}"]\n')

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
        _run("ip", "netns", "exec", self.inet, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        for addr in {*ZONE.values(), PUBLIC_RESOLVER}:
            _run("ip", "-n", self.inet, "addr", "add", f"{addr}/32", "dev", "lo")
        self._servers(self.inet, ZONE)
        self._build_corp()

    def _servers(self, ns: str, zone: dict[str, str]) -> None:
        where = self.dir / ns
        certs = where / "certs"
        certs.mkdir(parents=True)
        (where / "zone.json").write_text(json.dumps(zone))
        make_certificates(sorted(zone), certs)
        server = self._spawn(ns, [sys.executable, "-m", "dom0.simnet_servers",
                                  str(where / "zone.json"), str(certs)], stdout=True)
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], READY_TIMEOUT)
        if not ready or server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"simnet: the servers in {ns} did not start")

    def _spawn(self, ns: str, argv: list[str], stdout: bool = False) -> subprocess.Popen[str]:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], text=True,
                                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(proc)
        return proc

    def _build_corp(self) -> None:
        _run("ip", "netns", "add", self.corp)
        _run("ip", "-n", self.corp, "link", "set", "lo", "up")
        _run("ip", "link", "add", "corp0", "netns", self.inet, "type", "veth",
             "peer", "name", "wan0", "netns", self.corp)
        for ns, dev, addr in ((self.inet, "corp0", CORP_GW), (self.corp, "wan0", CORP_WAN)):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", self.corp, "route", "add", "default", "via", CORP_GW)
        _run("ip", "-n", self.corp, "addr", "add", f"{INTRANET}/32", "dev", "lo")
        wg = self._spawn(self.corp, ["wireguard-go", "-f", self.wg_iface])
        sock = Path("/var/run/wireguard") / f"{self.wg_iface}.sock"
        deadline = time.monotonic() + READY_TIMEOUT
        while not sock.exists():   # wireguard-go says it is ready only by its socket
            if wg.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("simnet: wireguard-go did not start in the corp network")
            time.sleep(0.01)
        key = self.dir / "corp.key"
        key.write_text(self.server_key + "\n")
        _run("ip", "netns", "exec", self.corp, "wg", "set", self.wg_iface, "private-key",
             str(key), "listen-port", str(WG_PORT), "peer", self.client_pub,
             "allowed-ips", f"{TUNNEL_CLIENT}/32")
        _run("ip", "-n", self.corp, "addr", "add", f"{TUNNEL_SERVER}/24", "dev", self.wg_iface)
        _run("ip", "-n", self.corp, "link", "set", self.wg_iface, "up")
        self._servers(self.corp, {"intranet.corp": INTRANET})

    def serve_folder(self, folder: Path, address: str, port: int = 8080) -> None:
        """A static web server for `folder` on the internet (a provider's TUF repository)."""
        _run("ip", "-n", self.inet, "addr", "add", f"{address}/32", "dev", "lo")
        server = self._spawn(self.inet, [sys.executable, "-u", "-c", STATIC_SERVER, str(folder),
                                         address, str(port)], stdout=True)
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], READY_TIMEOUT)
        if not ready or server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"simnet: no web server for {folder}")

    def publish(self, name: str, address: str) -> None:
        """Make the internet's DNS answer `name` from now on (e.g. the laptop has joined
        the corporate LAN, whose DNS knows the probe's name)."""
        zone_file = self.dir / self.inet / "zone.json"
        zone = json.loads(zone_file.read_text())
        zone[name] = address
        tmp = zone_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(zone))
        tmp.replace(zone_file)

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
            proc.wait()
        # Deleting a namespace takes its veth pairs with it, sys-sec's end included.
        for ns in (self.corp, self.inet):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        (Path("/var/run/wireguard") / f"{self.wg_iface}.sock").unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
