"""The three stories end to end (root only): the embedded platform (dom0d, xenstored, the
standard domains, sys-sec's firewall, resolver and inline engine) with the simulated
internet plugged into sys-sec's uplink. Every check is traffic from inside a guest.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.tuf_repo import publish
from dom0.sim.embedded import Platform
from dom0.sim.guest_scripts import (
    DIG,
    EICAR_SID,
    FETCH,
    FETCH_LOOP,
    RESOLVE,
    SYS_SEC_FILES,
)
from dom0.sim.net import (
    INTRANET,
    LAN_HOST,
    PUBLIC_RESOLVER,
    UPLINK_IP,
    ZONE,
    SimNet,
)
from domains.syssec.controller import GATEWAY
from netsec.trust import TrustStore
from tests.bundle_helpers import KEY, make, public_pem
from tests.tls_helpers import ca_and_client
from tests.wall_probes import delivered, listening_sockets, removed, run, send

pytestmark = [pytest.mark.root, pytest.mark.slow]
PROVIDER_PORT = 50443
UPDATES = "203.0.113.80"


def provider_bundle(folder: Path, version: int, host: str, rule: str | None = None) -> bytes:
    """A provider bundle of version `version` whose one rule drops HTTP to `host` (or is
    `rule`)."""
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    (folder / "lists").mkdir(exist_ok=True)
    (folder / "policy.toml").write_text("")
    (folder / "rules" / "acme.rules").write_text(rule or (
        f'drop http $HOME_NET any -> any any (msg:"acme: {host} blocked"; '
        f'flow:established,to_server; http.host; content:"{host}"; sid:{9200000 + version}; '
        'rev:1;)\n'))
    return make(folder, version=version, created=dt.datetime.now(dt.UTC))
PROVIDER_CA, PROVIDER_CERT, PROVIDER_KEY = ca_and_client("acme")
# The provider's side, run in the simulated internet: push a bundle, print the outcome.
PUSH = """
import sys, grpc
from proto.gen.hyperwall.provider.v1 import provider_pb2 as pb, provider_pb2_grpc as pb_grpc
server_cert, cert, key, bundle = (open(a, "rb").read() for a in sys.argv[1:5])
creds = grpc.ssl_channel_credentials(server_cert, key, cert)
with grpc.secure_channel(sys.argv[5], creds, options=[
        ("grpc.ssl_target_name_override", "sys-sec")]) as channel:
    try:
        done = pb_grpc.ProviderServiceStub(channel).PushBundle(
            pb.PushBundleRequest(bundle=bundle), timeout=60)
        print("applied", done.applied_version)
    except grpc.RpcError as e:
        print(e.code().name, e.details())
"""




@pytest.fixture(scope="module")
def both() -> Iterator[tuple[Platform, SimNet]]:
    net = SimNet(f"hws{os.getpid() % 10000}")
    files = {**SYS_SEC_FILES, "syssec.toml": SYS_SEC_FILES["syssec.toml"]
             + f'provider_listen = "0.0.0.0:{PROVIDER_PORT}"\n'
             + f'subscription_url = "http://{UPDATES}:8080"\nsubscription_interval = 1\n'
             + net.vpn_settings()}
    platform = Platform(first_domid=5000 + os.getpid() % 1000, sys_sec_files=files)
    # The provider's TUF repository, with a first bundle sys-sec will pick up by itself.
    repo = platform.dir / "provider-repo"
    publish(repo, KEY, provider_bundle(platform.dir / "bundle-in", 5, "nothing.example"),
            now=dt.datetime.now(dt.UTC))
    # The owner enrolled the provider before the platform came up.
    TrustStore(platform.sys_sec_dir / "provider").enroll(
        (repo / "metadata" / "1.root.json").read_bytes(), [public_pem(KEY)], PROVIDER_CA,
        provider="acme")
    try:
        platform.start()
        up = subprocess.run([sys.executable, "-m", "dom0.cli", "--json", "up"],
                            env=platform.env(), capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr + platform.log_text()
        sys_sec = next(d for d in json.loads(up.stdout) if d["name"] == "sys-sec")
        net.plug(f"hw-{sys_sec['domid']}")
        net.serve_folder(repo, UPDATES)
        yield platform, net
    finally:
        net.close()
        asyncio.run(platform.close())


@pytest.fixture
def world(both: tuple[Platform, SimNet]) -> Platform:
    return both[0]


async def py(p: Platform, domain: str, script: str, *args: str) -> str:
    code, out, err = await p.cli("exec", domain, "--", sys.executable, "-c", script, *args)
    assert code == 0, err
    return out.strip()


def eve(p: Platform, name: str = "eve.json") -> list[dict]:
    path = p.sys_sec_dir / "log" / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_family_reaches_an_allowed_site_but_not_a_blocked_one(world: Platform) -> None:
    assert await py(world, "family", RESOLVE, "allowed.example") == ZONE["allowed.example"]
    assert await py(world, "family", FETCH, "allowed.example", "80", "allowed.example") == \
        "hello from allowed.example"
    # Blocked by DNS: sys-sec's resolver answers with the sinkhole ...
    assert await py(world, "family", RESOLVE, "www.adult.example") == "0.0.0.0"
    # ... also when family asks another resolver (redirected to sys-sec's) ...
    assert await py(world, "family", DIG, "adult.example", PUBLIC_RESOLVER) == "0.0.0.0"
    # ... and by SNI when it connects to the site's address directly.
    assert (await py(world, "family", FETCH, ZONE["adult.example"], "443",
                     "adult.example")).startswith("FAILED")
    assert await py(world, "family", FETCH, ZONE["allowed.example"], "443",
                    "allowed.example") == "hello from allowed.example"
    # DNS over TLS and the known DNS-over-HTTPS endpoint are refused.
    assert (await py(world, "family", FETCH, PUBLIC_RESOLVER, "853", "x")).startswith("FAILED")
    assert (await py(world, "family", FETCH, ZONE["dns.google"], "443", "dns.google")) \
        .startswith("FAILED")
    # untrusted (policy internet) is not filtered by category.
    assert await py(world, "untrusted", RESOLVE, "adult.example") == ZONE["adult.example"]

    blocks = [{k: v for k, v in e["hyperwall"].items() if k != "guest_ip"}
              for e in eve(world, "dns.json") + eve(world)
              if e.get("hyperwall", {}).get("category")]
    assert {"guest": "family", "category": "adult", "site": "www.adult.example", "by": "dns"} \
        in blocks
    assert any(b["by"] == "sni" and b["site"] == "adult.example" for b in blocks), blocks


async def test_a_malicious_download_is_dropped_before_family_sees_it(world: Platform) -> None:
    got = await py(world, "family", FETCH, "allowed.example", "80", "allowed.example",
                   "", "/download/eicar.txt")
    assert "EICAR" not in got and got.startswith("FAILED"), got
    alerts = [e for e in eve(world) if e.get("event_type") == "alert"
              and e["alert"]["signature_id"] == EICAR_SID]
    assert alerts and alerts[0]["alert"]["action"] == "blocked"
    assert alerts[0]["hyperwall"]["guest"] == "family"
    assert alerts[0]["alert"]["signature"] == "ET MALWARE EICAR test file download"
    code, out, err = await world.cli("--json", "alerts", "--domain", "family")
    assert code == 0, err
    shown = [json.loads(line) for line in out.splitlines()]
    assert any(a["signature_id"] == EICAR_SID and a["action"] == "blocked" for a in shown)
    code, out, _ = await world.cli("--json", "alerts", "--domain", "untrusted")
    assert all(json.loads(line)["domain"] == "untrusted" for line in out.splitlines())


async def test_untrusted_reaches_the_internet_but_not_the_lan(
        both: tuple[Platform, SimNet]) -> None:
    # (Guests reaching each other: tests/integration/test_walls.py, every pair both ways.)
    world, _ = both
    assert await py(world, "untrusted", FETCH, "allowed.example", "80", "allowed.example") == \
        "hello from allowed.example"
    # The positive control: the LAN host answers whoever may reach it, sys-sec itself.
    sec = f"hw-{world.domid('sys-sec')}"
    assert run(sec, sys.executable, "-c", FETCH, LAN_HOST, "80", "printer.lan").strip() == \
        "hello from printer.lan"
    assert (await py(world, "untrusted", FETCH, LAN_HOST, "80", "printer.lan")) \
        .startswith("FAILED")


async def test_a_policy_changed_in_xenstore_applies_at_once(world: Platform) -> None:
    sys_sec, untrusted = world.domid("sys-sec"), world.domid("untrusted")
    key = f"/local/domain/{sys_sec}/backend/vif/{untrusted}/0/hyperwall/policy"
    with world.xenstore() as xs:
        xs.write(key, "offline")
    try:
        assert (await py(world, "untrusted", FETCH, ZONE["allowed.example"], "80",
                         "allowed.example")).startswith("FAILED")
    finally:
        with world.xenstore() as xs:
            xs.write(key, "internet")
    assert await py(world, "untrusted", FETCH, ZONE["allowed.example"], "80",
                    "allowed.example") == "hello from allowed.example"


@pytest.mark.parametrize("mutation", ["none", "open-input"])
async def test_no_guest_reaches_a_socket_of_sys_secs_but_its_resolver(
        both: tuple[Platform, SimNet], mutation: str) -> None:
    # (Forged sources: tests/integration/test_walls.py, observed at the far side.)
    world, _ = both
    sec = f"hw-{world.domid('sys-sec')}"
    sockets = listening_sockets(sec)
    kinds = {(s.proto, s.port): s.process for s in sockets}
    assert ("udp", 53) in kinds and ("tcp", PROVIDER_PORT) in kinds and \
        "wireguard-go" in kinds.values(), [str(s) for s in sockets]
    local = [line.split()[3].split("/")[0] for line in
             run(sec, "ip", "-4", "-o", "addr", "show").splitlines() if " lo " not in line]
    assert GATEWAY in local and UPLINK_IP in local, local
    targets = [(s, addr) for s in sockets for addr in s.ipv4_targets(local)]
    guests = {name: d["domid"] for name, d in (await listing(world)).items()
              if name != "sys-sec" and d["state"] == "running"}
    assert {"family", "untrusted", "work"} <= set(guests), guests

    def specs(who: str) -> list[str]:
        return [f"{'dns' if (s.proto, s.port) == ('udp', 53) else s.proto},{addr},{s.port},"
                f"{'allowed.example' if s.port == 53 else who}" for s, addr in targets]
    # INPUT's DROP policy is the wall: only the resolver (and ping) are accepted from a vif.
    changes = ["-P INPUT ACCEPT"] if mutation == "open-input" else []
    ports = [(s.proto, s.port) for s in sockets]
    with delivered(sec, ports) as count, removed(sec, *changes):
        mine = send(sec, *specs("sys-sec"))
        from_guests = {name: send(f"hw-{domid}", *specs(name)) for name, domid in guests.items()}
        counts = count.counts()
    report = {f"{s} at {addr}": {"sys-sec": mine[n], **{g: o[n] for g, o in
                                                       from_guests.items()}}
              for n, (s, addr) in enumerate(targets)}
    print(json.dumps(report, indent=1))
    for n, (s, addr) in enumerate(targets):
        # The positive control: from sys-sec's own side every socket is reached.
        assert counts[("lo", s.proto, s.port)] > 0, (str(s), addr)
        if s.proto == "tcp":
            assert mine[n] == "OPEN", (str(s), addr, mine[n])
        if s.port == 53:
            continue
        reached = counts[("vif*", s.proto, s.port)]
        if changes:
            assert reached >= len(guests), (str(s), addr, counts)
        else:
            assert reached == 0, (str(s), addr, counts)
            assert all(o[n] == "TIMEOUT" for o in from_guests.values()), report
    # The resolver answers on the gateway the guests whose policy uses it (work's DNS goes
    # through its tunnel); it never refuses: a refusal would be a packet through the wall.
    for n, (s, addr) in enumerate(targets):
        if s.port == 53 and addr == GATEWAY:
            for name in ("family", "untrusted"):
                assert from_guests[name][n] == ("REPLY" if s.proto == "udp" else "OPEN"), report
        if s.port == 53 and not changes:
            assert "REFUSED" not in {o[n] for o in from_guests.values()}, report


async def test_the_parents_report_shows_blocks_alerts_and_destinations(world: Platform) -> None:
    await py(world, "family", RESOLVE, "adult.example")
    code, out, err = await world.cli("--json", "report", "--domain", "family")
    assert code == 0, err
    report = json.loads(out)
    assert any(b["category"] == "adult" for b in report["blocked"])
    code, out, err = await world.cli("report", "--domain", "family")
    assert code == 0 and "Blocked sites by category" in out and "adult" in out


async def test_nothing_passes_while_the_engine_is_down_and_it_comes_back(
        world: Platform) -> None:
    async def sh(script: str) -> str:
        code, out, err = await world.cli("exec", "sys-sec", "--", "sh", "-c", script)
        assert code == 0, err
        return out.strip()
    # Every worker's (one per queue): whichever the guest's address pair hashes to.
    ipsd = await sh("cat /var/lib/hyperwall/run/ipsd.pid.*")
    controller = await sh("pgrep -f 'domains[.]syssec[.]controller'")
    # Hold the supervisor so the engine stays down while we look.
    await sh(f"kill -STOP {controller}; kill -KILL {' '.join(ipsd.split())}")
    try:
        assert (await py(world, "family", FETCH, "allowed.example", "80",
                         "allowed.example")).startswith("FAILED")
    finally:
        await sh(f"kill -CONT {controller}")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with asyncio.timeout(20):
        while await py(world, "family", FETCH, "allowed.example", "80",
                       "allowed.example") != "hello from allowed.example":
            pass
    print(f"traffic flowed again {loop.time() - t0:.2f}s after the supervisor resumed")
    again = (await sh("cat /var/lib/hyperwall/run/ipsd.pid.*")).split()
    assert len(again) == len(ipsd.split()) and not set(again) & set(ipsd.split())


async def test_work_starts_by_itself_once_the_uplink_is_on_the_corporate_network(
        both: tuple[Platform, SimNet]) -> None:
    world, net = both
    code, _, err = await world.cli("destroy", "work")
    assert code == 0, err
    events = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dom0.cli", "--json", "events", env=world.env(),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert events.stdout is not None
        probe = tomllib.loads((world.config_dir / "work.toml").read_text())["autostart"]
        # Not yet: the uplink's DNS does not know the corporate name.
        assert (await listing(world))["work"]["state"] == "defined"
        net.publish(probe["probe_name"], probe["probe_address"])
        async with asyncio.timeout(30):
            while True:
                event = json.loads(await events.stdout.readline())
                if (event["kind"], event["domain"]) == ("started", "work"):
                    break
    finally:
        events.terminate()
        await events.wait()
    assert (await listing(world))["work"]["state"] == "running"


async def listing(p: Platform) -> dict[str, dict]:
    code, out, err = await p.cli("--json", "list")
    assert code == 0, err
    return {d["name"]: d for d in json.loads(out)}


async def test_work_reaches_the_intranet_only_through_the_tunnel_and_leaks_nothing(
        world: Platform) -> None:
    # (Last in this module: it takes the tunnel down.)
    async def fetch(domain: str, address: str, host: str) -> str:
        return await py(world, domain, FETCH, address, "80", host)
    assert await fetch("work", INTRANET, "intranet.corp") == "hello from intranet.corp"
    assert (await fetch("work", ZONE["allowed.example"], "allowed.example")).startswith("FAILED")
    for other in ("family", "untrusted"):   # nobody else, even addressing it directly
        assert (await fetch(other, INTRANET, "intranet.corp")).startswith("FAILED")

    inet = next(n for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                          text=True).stdout.split() if n.endswith("-inet")
                and n.startswith(f"hws{os.getpid() % 10000}"))
    subprocess.run(["ip", "netns", "exec", inet, "iptables", "-I", "FORWARD", "-d",
                    "10.200.0.0/16", "-i", "sec0"], check=True)
    subprocess.run(["ip", "netns", "exec", inet, "iptables", "-I", "INPUT", "-d",
                    "10.200.0.0/16", "-i", "sec0"], check=True)
    code, _, err = await world.cli("exec", "sys-sec", "--", "pkill", "-f", "wireguard-go")
    assert code == 0, err
    assert (await fetch("work", INTRANET, "intranet.corp")).startswith("FAILED")
    assert (await fetch("work", ZONE["allowed.example"], "allowed.example")).startswith("FAILED")
    counted = subprocess.run(["ip", "netns", "exec", inet, "iptables", "-L", "-v", "-n", "-x"],
                             capture_output=True, text=True, check=True).stdout
    leaked = [line for line in counted.splitlines() if "10.200.0.0/16" in line]
    assert leaked and all(line.split()[0] == "0" for line in leaked), counted


async def test_the_subscription_brings_the_providers_new_bundle(
        both: tuple[Platform, SimNet]) -> None:
    world, _ = both
    repo = world.dir / "provider-repo"
    # sys-sec picked up the repository's first bundle by itself.
    async with asyncio.timeout(20):
        while (TrustStore(world.sys_sec_dir / "provider").load().last_version or 0) < 5:
            await asyncio.sleep(0.2)   # the trust store is a file; no event to wait on
    assert await py(world, "untrusted", FETCH, "ads.example", "80", "ads.example") == \
        "hello from ads.example"
    publish(repo, KEY, provider_bundle(world.dir / "bundle-in", 6, "ads.example"),
            now=dt.datetime.now(dt.UTC))
    async with asyncio.timeout(30):
        while not (await py(world, "untrusted", FETCH, "ads.example", "80", "ads.example")) \
                .startswith("FAILED"):
            pass
    assert TrustStore(world.sys_sec_dir / "provider").load().last_version == 6


async def test_a_provider_update_applies_while_traffic_flows_and_revoking_cuts_it_off(
        both: tuple[Platform, SimNet], tmp_path: Path) -> None:
    world, net = both
    assert await py(world, "family", FETCH, "news.example", "80", "news.example") == \
        "hello from news.example"
    for name, content in (("cert", PROVIDER_CERT), ("key", PROVIDER_KEY)):
        (tmp_path / name).write_bytes(content)

    async def push(version: int, rule: str | None = None) -> str:
        (tmp_path / "bundle").write_bytes(provider_bundle(tmp_path / f"in{version}", version,
                                                          "news.example", rule))
        done = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", net.inet, sys.executable, "-c", PUSH,
            str(world.sys_sec_dir / "tls" / "server.pem"), str(tmp_path / "cert"),
            str(tmp_path / "key"), str(tmp_path / "bundle"), f"{UPLINK_IP}:{PROVIDER_PORT}",
            stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
        out, _ = await done.communicate()
        return out.decode().strip()

    # Traffic flows in family all along the update: every fetch of the loop gets through.
    loop = asyncio.ensure_future(py(world, "family", FETCH_LOOP, "allowed.example", "12"))
    assert await push(7) == "applied 7"
    assert (await loop).splitlines() == ["hello from allowed.example"] * 12
    assert (await py(world, "family", FETCH, "news.example", "80", "news.example")) \
        .startswith("FAILED")
    assert any(e.get("alert", {}).get("signature_id") == 9200007 for e in eve(world))
    assert "not newer" in await push(7)      # a replay
    # Rules the engine refuses (they drop the self-test's plain HTTP exchange): the bundle is
    # rolled back, and bundle 7's rule keeps enforcing in the running hyperwall-ipsd.
    alerts = sum(e.get("alert", {}).get("signature_id") == 9200007 for e in eve(world))
    refused = await push(8, 'drop tcp any any -> any any (msg:"acme: everything"; '
                            'sid:9300001; rev:1;)\n')
    assert refused.startswith("INVALID_ARGUMENT"), refused
    assert TrustStore(world.sys_sec_dir / "provider").load().last_version == 7
    assert (await py(world, "family", FETCH, "news.example", "80", "news.example")) \
        .startswith("FAILED")
    assert sum(e.get("alert", {}).get("signature_id") == 9200007 for e in eve(world)) > alerts
    assert await py(world, "family", FETCH, "allowed.example", "80", "allowed.example") == \
        "hello from allowed.example"

    code, _, err = await world.cli("provider", "revoke")
    assert code == 0, err
    assert (await push(9)).startswith("PERMISSION_DENIED")
