"""Real clients inside `family` (issue 12, item 6): Debian's curl and headless Chromium fetch
an allowed and a blocked site over HTTP and HTTPS, through the embedded platform and the
simulated world. Observed at both ends: the far-side server (tests/evasion_shapes.py) logs
each request it is asked, and the client prints what it got.

"by name": the client resolves through family's resolver (sys-sec's, the DNS wall);
"pinned address": the client is told the site's address, so only the HTTP Host / TLS SNI
wall stands between it and the site. The clients run in family's network namespace with
the host's files and family's resolver (/etc/netns/<ns>/resolv.conf, which `ip netns exec`
puts over /etc/resolv.conf), each Chromium with a fresh profile under tmp.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dom0.sim.net import ZONE, SimNet
from tests.simworld import embedded_world
from tests.syssec_lab import GW, Listener

pytestmark = [pytest.mark.root, pytest.mark.slow]

SITE_ADDR = "203.0.113.78"
ALLOWED, BLOCKED = "shop.example", "videos.adult.example"   # adult.example is on the list
CLIENT_TIMEOUT = 40


@dataclass
class World:
    net: SimNet
    server: Listener
    netns: str
    untrusted: str     # where the sentinel comes from
    spki: str          # Chromium's --ignore-certificate-errors-spki-list for both sites

    def client(self, *argv: str) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True,
                              text=True, timeout=CLIENT_TIMEOUT)
        return done.stdout

    def asked(self, name: str) -> list[dict]:
        """The requests for `name` the far side logged since the last call: a sentinel
        request from `untrusted` goes last, so whatever arrived before it has been logged."""
        subprocess.run(["ip", "netns", "exec", self.untrusted, "curl", "-s", "-m", "5", "-H",
                        "Host: sentinel.example", f"http://{SITE_ADDR}/"], capture_output=True,
                       timeout=CLIENT_TIMEOUT)
        assert self.server.wait_for(lambda line: "sentinel.example" in line, 10), \
            "the far side did not log the sentinel"
        lines = [json.loads(line) for line in self.server.take()]
        return [a for a in lines if name in (a.get("host"), a.get("sni"))]


def spki_hash(pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    zone = {**ZONE, ALLOWED: SITE_ADDR, BLOCKED: SITE_ADDR}
    with embedded_world(f"hwrc{os.getpid() % 10000}", zone,
                        first_domid=7000 + os.getpid() % 1000) as (platform, net):
        certs = net.dir / net.inet / "certs"
        server = Listener(None, net.inet, "from tests.evasion_shapes import main; "  # type: ignore[arg-type]
                          "import sys; main(sys.argv[1:])", "serve", SITE_ADDR, str(certs),
                          "80", "443")
        netns = f"hw-{platform.domid('family')}"
        etc = Path("/etc/netns") / netns
        etc.mkdir(parents=True, exist_ok=True)
        # What family's agent writes into family's own /etc/resolv.conf.
        (etc / "resolv.conf").write_text(f"nameserver {GW}\n")
        try:
            yield World(net, server, netns, f"hw-{platform.domid('untrusted')}",
                        ",".join(spki_hash(certs / f"{n}.pem") for n in (ALLOWED, BLOCKED)))
        finally:
            server.stop()
            shutil.rmtree(etc, ignore_errors=True)


def curl(w: World, url: str, pin: bool) -> str:
    host = url.split("/")[2]
    port = "443" if url.startswith("https") else "80"
    return w.client("curl", "-s", "-m", "5", "--cacert", str(w.net.ca_file),
                    *(["--resolve", f"{host}:{port}:{SITE_ADDR}"] if pin else []), url)


def chromium(w: World, url: str, pin: bool, profile: Path) -> str:
    host = url.split("/")[2]
    return w.client(
        "chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--timeout=8000", "--virtual-time-budget=5000",
        f"--ignore-certificate-errors-spki-list={w.spki}",
        *([f"--host-resolver-rules=MAP {host} {SITE_ADDR}"] if pin else []),
        "--dump-dom", url)


CLIENTS = {"curl": curl, "chromium": chromium}


@pytest.mark.parametrize("how", ["by name", "pinned address"])
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("client", CLIENTS)
def test_real_client_in_family(world: World, client: str, scheme: str, how: str,
                               tmp_path: Path) -> None:
    def fetch(name: str, profile: str) -> tuple[str, list[dict]]:
        args = (world, f"{scheme}://{name}/", how == "pinned address")
        got = chromium(*args, tmp_path / profile) if client == "chromium" else curl(*args)
        return got, world.asked(name)
    # Positive control: the allowed site is asked and its page reaches the client.
    got, asked = fetch(ALLOWED, "allowed")
    assert asked and f"hello from {ALLOWED}" in got, (asked, got[-500:])
    got, asked = fetch(BLOCKED, "blocked")
    assert not asked, f"the far side was asked for {BLOCKED}: {asked}"
    assert f"hello from {BLOCKED}" not in got

