"""The simulated internet that `make demo` and the end-to-end tests plug into sys-sec's
uplink, built and torn down whole.

    sys-sec: uplink0 198.51.100.2/24 --veth-- sec0 198.51.100.1/24 :<prefix>-inet
    <prefix>-inet holds every server address on its loopback and runs dom0.sim.servers:
      DNS (authoritative for ZONE) on :53 of every address, HTTP on :80, HTTPS on :443

    <prefix>-corp: the corporate network, 10.200.0.0/16 (the intranet server 10.200.0.10),
      reachable only through its WireGuard server at 203.0.113.202:51820 (wireguard-go);
      `vpn_settings()` is sys-sec's side of the tunnel

192.0.2.53 plays a public resolver (a guest trying to bypass sys-sec's), 192.168.1.10 a
host on the local network (what only `lan` guests may reach). Certificates come from a CA
made for the occasion.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.x509.oid import NameOID

from dom0.backends.ns import NETNS_DIR
from domains.runner import run_sync
from domains.syssec.vpn import VpnConfig
from domains.syssec.wireguard import Peer, WireGuardGo, config_text, socket_path

ROUTER, UPLINK_IP = "198.51.100.1", "198.51.100.2"
UPLINK = "uplink0"
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
# The corporate DNS (on the intranet server, through the tunnel) also knows a name that
# says "you are on the corporate network" (tests.corp_network's kind of check).
PROBE_NAME, PROBE_ADDRESS = "probe.corp", "10.200.0.1"
CORP_ZONE = {"intranet.corp": INTRANET, PROBE_NAME: PROBE_ADDRESS}
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


class CertificateAuthority:
    """A throwaway CA that signs one certificate per server name."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hyperwall simnet CA")])
        self.cert = self._sign(self.name, self.key.public_key(), ca=True)

    def _sign(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey,
              ca: bool = False, name: str | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(self.now - dt.timedelta(hours=1))
                   .not_valid_after(self.now + dt.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
        if name is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        return builder.sign(self.key, hashes.SHA256())

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: list[str], out: Path) -> None:
        """`<name>.pem` (certificate, then its key) in `out` for each name."""
        for name in names:
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
            cert = self._sign(subject, key.public_key(), name=name)
            (out / f"{name}.pem").write_bytes(
                cert.public_bytes(serialization.Encoding.PEM)
                + key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))


class SimNet:
    """The simulated world. `plug(ns)` (or `await start(ns)`) builds it onto the uplink
    namespace `ns`; `close()` (or `await stop()`, or leaving a `with`) removes everything it
    made, also after a start that failed half-way.

        with SimNet("hwnet1").plug("hwnet1-sec") as net:
            ...   # sys-sec's namespace now has uplink0 and a default route

    `zone` replaces the internet's DNS names (default ZONE; each address is put on the
    internet's loopback); `wg_iface` names the corporate WireGuard server's interface,
    which must differ from every other wireguard-go interface on the host."""

    def __init__(self, prefix: str, zone: dict[str, str] | None = None,
                 wg_iface: str | None = None) -> None:
        self.prefix = prefix
        self.inet = f"{prefix}-inet"
        self.corp = f"{prefix}-corp"
        self.zone = dict(ZONE if zone is None else zone)
        for name, address in self.zone.items():
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise ValueError(f"simnet zone: {name} -> {address!r} is not an IPv4 "
                                 "address") from None
        self.wg = WireGuardGo(wg_iface or f"wgc{prefix[-8:]}", self.corp)
        self.dir = Path(tempfile.mkdtemp(prefix="hwsim-"))
        self.ca = CertificateAuthority()
        # Clients that verify (check_hostname) trust this file.
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_bytes(self.ca.pem)
        self.processes: list[subprocess.Popen[str]] = []
        self.namespaces: list[str] = []   # those this world made, and only those
        self.server_key, self.server_pub = wg_keypair()
        self.client_key, self.client_pub = wg_keypair()

    @property
    def wg_iface(self) -> str:
        return self.wg.iface

    def vpn_settings(self) -> str:
        """sys-sec's [vpn] settings (syssec.toml) for this world's corporate network."""
        return (f'[vpn]\nprivate_key = "{self.client_key}"\n'
                f'peer_public_key = "{self.server_pub}"\nendpoint = "{CORP_WAN}:{WG_PORT}"\n'
                f'address = "{TUNNEL_CLIENT}/32"\nroutes = ["{CORP_RANGE}"]\n')

    def vpn_config(self) -> VpnConfig:
        """The same, as `domains.syssec.vpn.Tunnel` takes it."""
        return VpnConfig.from_settings(tomllib.loads(self.vpn_settings())["vpn"], "simnet")

    def plug(self, sys_sec_netns: str) -> SimNet:
        """Build the world and plug it into sys-sec's namespace as its uplink."""
        try:
            self._build(sys_sec_netns)
        except BaseException:
            self.close()
            raise
        return self

    async def start(self, sys_sec_netns: str) -> SimNet:
        return await asyncio.to_thread(self.plug, sys_sec_netns)

    async def stop(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> SimNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _netns(self, name: str) -> None:
        run_sync(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run_sync(["ip", "-n", name, "link", "set", "lo", "up"])

    def _build(self, sys_sec: str) -> None:
        if not (NETNS_DIR / sys_sec).exists():
            raise ValueError(f"simnet: no network namespace {sys_sec!r} to plug into")
        self._netns(self.inet)
        run_sync(["ip", "link", "add", "sec0", "netns", self.inet, "type", "veth",
                  "peer", "name", UPLINK, "netns", sys_sec])
        for ns, dev, addr in ((self.inet, "sec0", ROUTER), (sys_sec, UPLINK, UPLINK_IP)):
            run_sync(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
            run_sync(["ip", "-n", ns, "link", "set", dev, "up"])
        run_sync(["ip", "-n", sys_sec, "route", "replace", "default", "via", ROUTER])
        run_sync(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], netns=self.inet)
        for addr in {*self.zone.values(), PUBLIC_RESOLVER}:
            run_sync(["ip", "-n", self.inet, "addr", "add", f"{addr}/32", "dev", "lo"])
        self._servers(self.inet, self.zone)
        self._build_corp()

    def _servers(self, ns: str, zone: dict[str, str]) -> None:
        where = self.dir / ns
        certs = where / "certs"
        certs.mkdir(parents=True)
        (where / "zone.json").write_text(json.dumps(zone))
        self.ca.issue(sorted(zone), certs)
        self._serve(ns, [sys.executable, "-m", "dom0.sim.servers",
                         str(where / "zone.json"), str(certs)], f"the servers in {ns}")

    def _serve(self, ns: str, argv: list[str], what: str) -> None:
        """Run a server in `ns` and return once it prints "ready"."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self.processes.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
        if not ready or proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"simnet: {what} did not start (exit status {proc.poll()})")

    def _build_corp(self) -> None:
        self._netns(self.corp)
        run_sync(["ip", "link", "add", "corp0", "netns", self.inet, "type", "veth",
                  "peer", "name", "wan0", "netns", self.corp])
        for ns, dev, addr in ((self.inet, "corp0", CORP_GW), (self.corp, "wan0", CORP_WAN)):
            run_sync(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev])
            run_sync(["ip", "-n", ns, "link", "set", dev, "up"])
        # Only a default route out: the internet has no route to the corporate ranges, so
        # they are reachable through the tunnel alone.
        run_sync(["ip", "-n", self.corp, "route", "add", "default", "via", CORP_GW])
        run_sync(["ip", "-n", self.corp, "addr", "add", f"{INTRANET}/32", "dev", "lo"])
        self.wg.start()
        conf = config_text(self.server_key, [Peer(self.client_pub, (f"{TUNNEL_CLIENT}/32",))],
                           listen_port=WG_PORT)
        run_sync(["wg", "setconf", self.wg_iface, "/dev/stdin"], input=conf.encode(),
                 netns=self.corp)
        run_sync(["ip", "-n", self.corp, "addr", "add", f"{TUNNEL_SERVER}/24", "dev",
                  self.wg_iface])
        run_sync(["ip", "-n", self.corp, "link", "set", self.wg_iface, "up"])
        self._servers(self.corp, CORP_ZONE)

    def serve_folder(self, folder: Path, address: str, port: int = 8080) -> None:
        """A static web server for `folder` on the internet (a provider's TUF repository)."""
        run_sync(["ip", "-n", self.inet, "addr", "add", f"{address}/32", "dev", "lo"])
        self._serve(self.inet, [sys.executable, "-u", "-c", STATIC_SERVER, str(folder),
                                address, str(port)], f"the web server for {folder}")

    def publish(self, name: str, address: str) -> None:
        """Make the internet's DNS answer `name` from now on (e.g. the laptop has joined
        the corporate LAN, whose DNS knows the probe's name)."""
        zone_file = self.dir / self.inet / "zone.json"
        zone = json.loads(zone_file.read_text())
        zone[name] = address
        self.zone[name] = address
        tmp = zone_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(zone))
        tmp.replace(zone_file)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.processes.clear()
        self.wg.stop()
        # Deleting a namespace takes its veth pairs with it, but the kernel does that
        # later, from a workqueue; deleting the uplink first removes sys-sec's end now.
        if self.inet in self.namespaces:
            run_sync(["ip", "-n", self.inet, "link", "del", "sec0"], check=False)
        for ns in reversed(self.namespaces):
            run_sync(["ip", "netns", "delete", ns], check=False)
        self.namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What of this world is still on the host (empty after `close`)."""
        found = [f"netns {ns.name}" for ns in NETNS_DIR.glob(f"{self.prefix}-*")]
        if socket_path(self.wg_iface).exists():
            found.append(f"socket {socket_path(self.wg_iface)}")
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"wireguard-go") and self.wg_iface.encode() in argv:
                found.append(f"wireguard-go {proc.name}")
        if self.dir.exists():
            found.append(f"folder {self.dir}")
        return found
