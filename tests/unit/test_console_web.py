"""The console's web app over the real control API (dom0d's gRPC server and credential proxy
on real Unix sockets, the toolstack being the stand-in) and a real SecurityService over EVE
records, driven through real HTTP by aiohttp's test client.

The test process is root or the owner of the stand-in: the console reaches dom0d as an
owner, and these tests check that it narrows every answer to the session's user itself.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dom0.api.auth import Caller, PeerCred, resolve_caller
from dom0.api.server import ControlServer, serve
from dom0.cli import main as cli
from dom0.cli.console import request_link
from dom0.console.backend import Platform
from dom0.console.web import COOKIE, HEADERS, Console, make_app, token_socket
from dom0.model import DomainState
from domains.syssec.security_service import serve as serve_security
from tests.control_fakes import StandInToolstack, short_dir

OWNER = Caller(uid=1001, user="olga", owner=True)
BOB = Caller(uid=1003, user="bob", owner=False)   # family's users name him, work's do not


def _block(domain: str, site: str, category: str, when: dt.datetime) -> dict[str, object]:
    return {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%f+0000"), "event_type": "alert",
            "alert": {"action": "blocked", "signature_id": 9000001,
                      "signature": f"category {category}: {site}"},
            "hyperwall": {"domain": domain, "guest": domain, "category": category,
                          "site": site}}


@pytest.fixture
async def world() -> AsyncIterator[tuple[StandInToolstack, Console, Path]]:
    now = dt.datetime.now(dt.UTC)
    records = [_block("family", "adult.example", "adult", now),
               _block("work", "secret-work.example", "gambling", now)]
    with short_dir() as run:
        (run / "sys-sec" / "log").mkdir(parents=True)
        (run / "sys-sec" / "log" / "eve.json").write_text(
            "".join(json.dumps(r) + "\n" for r in records))
        security = await serve_security(run / "sys-sec" / "log", run / "sys-sec" / "security.sock")
        toolstack = StandInToolstack()
        control: ControlServer = await serve(toolstack, run / "control.sock",
                                             sys_sec_dir=run / "sys-sec")
        platform = Platform(run / "control.sock")
        try:
            yield toolstack, Console(platform), run
        finally:
            await platform.close()
            await control.stop(None)
            await security.stop(None)


@pytest.fixture
async def client(world: tuple[StandInToolstack, Console, Path]) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(world[1]))) as c:
        yield c


async def login(client: TestClient, console: Console, caller: Caller) -> None:
    url = console.login_url(caller)
    r = await client.get("/login?" + url.split("?", 1)[1], allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and f"{COOKIE}=" in cookie


async def csrf(client: TestClient, path: str = "/") -> str:
    text = await (await client.get(path)).text()
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    for path in ("/", "/nowhere", "/domain/work", "/static/console.css", "/login?token=x"):
        r = await client.get(path, allow_redirects=False)
        for name, value in HEADERS.items():
            assert r.headers.get(name) == value, (path, name)
    assert "'unsafe-inline'" not in HEADERS["Content-Security-Policy"]


async def test_a_login_link_works_once(client: TestClient,
                                       world: tuple[StandInToolstack, Console, Path]) -> None:
    url = world[1].login_url(OWNER)
    query = "/login?" + url.split("?", 1)[1]
    assert (await client.get(query, allow_redirects=False)).status == 303
    client.session.cookie_jar.clear()
    r = await client.get(query, allow_redirects=False)
    assert r.status == 403 and "used already" in await r.text()
    assert "hyperwall console" in await (await client.get("/")).text()


async def test_without_a_session_nothing_is_shown(client: TestClient) -> None:
    for path in ("/domain/family", "/report/family", "/provider", "/domain/family/alerts"):
        r = await client.get(path)
        assert r.status == 401, path
        assert "family" not in await r.text() or path == "/domain/family"
    r = await client.post("/domain/family/action", data={"action": "start"})
    assert r.status == 401


async def test_a_listed_user_sees_and_acts_on_their_domains_only(
        client: TestClient, world: tuple[StandInToolstack, Console, Path]) -> None:
    toolstack, console, _ = world
    await login(client, console, BOB)
    page = await (await client.get("/")).text()
    assert 'id="domain-family"' in page and 'id="domain-work"' not in page
    assert "secret-work" not in await (await client.get("/report/family")).text()
    assert "adult.example" in await (await client.get("/family")).text()
    token = await csrf(client)
    for path in ("/domain/work", "/domain/work/confirm?action=start", "/report/work",
                 "/domain/work/alerts", "/provider"):
        r = await client.get(path)
        assert r.status == 403, path
        assert "secret-work" not in await r.text()
    # A request crafted by hand, with a good CSRF token, is refused all the same.
    r = await client.post("/domain/work/action", data={"action": "start", "csrf": token})
    assert r.status == 403 and "may not use domain &#39;work&#39;" in await r.text()
    # A domain that does not exist looks the same as one that is hidden.
    r = await client.get("/domain/nosuch")
    assert r.status == 403
    assert not [c for c in toolstack.calls if c[:2] == ("start", "work")]
    # Reset is destroy, which the control API leaves to owners.
    assert (await client.get("/domain/family/confirm?action=reset")).status == 403


async def test_the_owner_stops_and_starts_a_domain_through_a_confirmation(
        client: TestClient, world: tuple[StandInToolstack, Console, Path]) -> None:
    toolstack, console, _ = world
    await login(client, console, OWNER)
    page = await (await client.get("/domain/family/confirm?action=start")).text()
    assert "<form method=\"post\" action=\"/domain/family/action\">" in page
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = await client.post("/domain/family/action", data={"action": "start", "csrf": token})
    assert r.status == 200 and toolstack.states["family"] is DomainState.RUNNING
    assert "running" in await r.text()
    r = await client.post("/domain/family/action", data={"action": "shutdown", "csrf": token})
    assert r.status == 200 and toolstack.states["family"] is DomainState.SHUTDOWN
    # The platform's refusal is a page that says why, without a traceback.
    r = await client.post("/domain/family/action", data={"action": "shutdown", "csrf": token})
    assert r.status == 409 and "not running" in (text := await r.text())
    assert "Traceback" not in text


async def test_a_form_without_its_csrf_token_is_refused(
        client: TestClient, world: tuple[StandInToolstack, Console, Path]) -> None:
    toolstack, console, _ = world
    await login(client, console, OWNER)
    for data in ({"action": "start"}, {"action": "start", "csrf": "0" * 64}):
        r = await client.post("/domain/family/action", data=data)
        assert r.status == 403 and "CSRF" in await r.text()
    r = await client.post("/logout", data={})
    assert r.status == 403
    assert toolstack.calls == []


async def test_logout_ends_the_session(client: TestClient,
                                       world: tuple[StandInToolstack, Console, Path]) -> None:
    await login(client, world[1], OWNER)
    token = await csrf(client)
    r = await client.post("/logout", data={"csrf": token}, allow_redirects=False)
    assert r.status == 303
    assert (await client.get("/domain/family")).status == 401


async def test_the_family_page_draws_labelled_svg_charts(
        client: TestClient, world: tuple[StandInToolstack, Console, Path]) -> None:
    await login(client, world[1], OWNER)
    page = await (await client.get("/family")).text()
    assert page.count("<svg") == 3 and "pattern: " in page and "adult (1" in page
    assert "<script>" not in page and " style=" not in page


async def test_a_bug_is_an_error_page_without_a_traceback(
        client: TestClient, world: tuple[StandInToolstack, Console, Path]) -> None:
    toolstack, console, _ = world
    await login(client, console, OWNER)
    toolstack.fail_with = RuntimeError("secret internals")
    token = await csrf(client)
    r = await client.post("/domain/family/action", data={"action": "start", "csrf": token})
    text = await r.text()
    assert r.status == 502 and "secret internals" not in text and "Traceback" not in text


async def test_the_token_socket_logs_in_the_uid_the_kernel_names(
        world: tuple[StandInToolstack, Console, Path]) -> None:
    _, console, run = world
    server = await token_socket(console, run / "console.sock")
    try:
        answer = await asyncio.to_thread(request_link, run / "console.sock")
        code = await asyncio.to_thread(cli.run, ["console", "--no-open", "--console-socket",
                                                 str(run / "console.sock")])
        assert code == 0
    finally:
        server.close()
    me = resolve_caller(PeerCred(0, os.getuid(), os.getgid()))
    assert answer["user"] == me.label
    session = console.sessions.redeem(answer["url"].split("token=", 1)[1], time.monotonic())
    assert session.caller == me
