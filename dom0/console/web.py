"""`hyperwall-console`: the web console (issue 17), an aiohttp app on loopback.

Who is logged in comes from the console's own Unix socket (`token_socket`): `hyperwall
console` connects to it, the kernel tells the console the caller's uid (SO_PEERCRED, read
with dom0.api.auth.peer_cred) and the console answers with a one-time login link for that
user. This is the control socket's own proof of identity without a new RPC in dom0d: the
console keeps its sessions, dom0d keeps none.

Every handler authorises on the server with the control API's policy (dom0.api.auth) for
the session's user; pages never hide a button instead. The security headers, the error
pages (no stack trace ever) and the session lookup are middlewares, so no handler can
forget them.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from dom0.api import DEFAULT_SOCKET, auth
from dom0.api.auth import Caller, Operation
from dom0.cli.console import DEFAULT_CONSOLE_SOCKET
from dom0.console import charts
from dom0.console.backend import Platform, PlatformError
from dom0.console.sessions import Session, SessionError, SessionStore
from dom0.model import DomainInfo, DomainState
from netsec.report import build_report, guest_address

log = logging.getLogger(__name__)

DEFAULT_PORT = 8137
COOKIE = "hw_session"
STATIC = Path(__file__).with_name("static")
HEADERS = {
    # No inline script or style and nothing remote: every asset is served from here.
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self'; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The login link carries its token: no page may pass its address on.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# What a confirmation page may ask for: the action, the operation the control API
# authorises it as, and how it is said to a person. reset = destroy then start again.
ACTIONS: dict[str, tuple[Operation, str]] = {
    "start": (Operation.START, "Start"),
    "shutdown": (Operation.SHUTDOWN, "Stop"),
    "reset": (Operation.DESTROY, "Reset to clean"),
}

env = Environment(loader=PackageLoader("dom0.console", "templates"),
                  autoescape=select_autoescape(default=True), trim_blocks=True,
                  lstrip_blocks=True)


class Console:
    """The app's state: the sessions and the way to the platform."""

    def __init__(self, platform: Platform, sessions: SessionStore | None = None,
                 *, base_url: str = f"http://127.0.0.1:{DEFAULT_PORT}") -> None:
        self.platform = platform
        self.sessions = sessions or SessionStore()
        self.base_url = base_url

    def login_url(self, caller: Caller) -> str:
        return f"{self.base_url}/login?token={self.sessions.mint_token(caller, time.monotonic())}"


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
SESSION: web.RequestKey[Session | None] = web.RequestKey("session")


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


def _session(request: web.Request) -> Session:
    session = request.get(SESSION)
    if session is None:
        raise web.HTTPUnauthorized(text="you are not logged in (or your session ended): run "
                                   "`hyperwall console` for a login link")
    return session


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    session = request.get(SESSION)
    csrf = _console(request).sessions.csrf_token(session) if session else ""
    body = env.get_template(template).render(session=session, csrf=csrf, path=request.path,
                                             **values)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


# -- middlewares ---------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:
        e.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a page that says what happened and never how (no traceback);
    a bug is logged here with its traceback."""
    try:
        return await handler(request)
    except web.HTTPRedirection:
        raise
    except web.HTTPException as e:
        return render(request, "error.html", e.status, title=e.reason,
                      message=e.text if e.text and not e.text.startswith(f"{e.status}:")
                      else e.reason)
    except PlatformError as e:
        status = {"NOT_FOUND": 404, "PERMISSION_DENIED": 403, "INVALID_ARGUMENT": 400,
                  "FAILED_PRECONDITION": 409}.get(e.code, 502)
        return render(request, "error.html", status, title="The platform said no",
                      message=str(e))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("console: %s %s failed", request.method, request.path)
        return render(request, "error.html", 500, title="Internal error",
                      message="the console failed; its log has the details")


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[SESSION] = _console(request).sessions.get(request.cookies.get(COOKIE),
                                                        time.monotonic())
    if request.method == "POST":
        session = _session(request)
        form = await request.post()
        token = form.get("csrf")
        if not _console(request).sessions.check_csrf(session, token if isinstance(token, str)
                                                     else None):
            raise web.HTTPForbidden(text="the form came without this session's CSRF token "
                                    "(reload the page and try again)")
    return await handler(request)


# -- authorisation -------------------------------------------------------------------------

async def authorised(request: web.Request, op: Operation,
                     name: str | None = None) -> tuple[Caller, list[DomainInfo]]:
    """The caller and the domains they may see, once the control API's policy allows `op`
    (on `name`); 403 with its reason otherwise, the same for a domain that does not exist
    and one the caller may not see."""
    caller = _session(request).caller
    infos = await _console(request).platform.domains()
    users = {i.name: i.users for i in infos}
    if op in auth.SECURITY_READS:
        reason = auth.read_refusal(caller, op, name, users)
    else:
        reason = auth.refusal(caller, op, name, users.get(name) if name else None)
    if reason is not None:
        raise web.HTTPForbidden(text=reason)
    visible = [i for i in infos if auth.may_use(caller, i.users)]
    if name is not None and name not in users:
        raise web.HTTPNotFound(text=f"there is no domain {name!r}")
    return caller, visible


def _one(infos: list[DomainInfo], name: str) -> DomainInfo:
    return next(i for i in infos if i.name == name)


def uptime(platform: Platform, info: DomainInfo) -> str:
    started = platform.started.get(info.name)
    if info.state is not DomainState.RUNNING or started is None:
        return "-"
    seconds = int(time.time() - started)
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m {seconds % 60:02d}s"


# -- handlers ------------------------------------------------------------------------------

async def login(request: web.Request) -> web.StreamResponse:
    try:
        session = _console(request).sessions.redeem(request.query.get("token", ""),
                                                    time.monotonic())
    except SessionError as e:
        raise web.HTTPForbidden(text=str(e)) from None
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict", path="/",
                        max_age=int(session.expires - session.created))
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    _console(request).sessions.logout(_session(request).id)
    response = web.HTTPSeeOther("/")
    response.del_cookie(COOKIE, path="/")
    raise response


async def index(request: web.Request) -> web.StreamResponse:
    if request.get(SESSION) is None:
        return render(request, "welcome.html", 200)
    caller, visible = await authorised(request, Operation.LIST)
    platform = _console(request).platform
    return render(request, "domains.html", domains=visible, caller=caller,
                  uptime=lambda i: uptime(platform, i), actions=ACTIONS)


async def domain(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    caller, visible = await authorised(request, Operation.GET, name)
    alerts = [a async for a in _console(request).platform.alerts(name)][-50:]
    return render(request, "domain.html", d=_one(visible, name), alerts=alerts,
                  domains=visible, actions=ACTIONS,
                  uptime=uptime(_console(request).platform, _one(visible, name)))


async def confirm(request: web.Request) -> web.StreamResponse:
    name, action = request.match_info["name"], request.query.get("action", "")
    if action not in ACTIONS:
        raise web.HTTPBadRequest(text=f"unknown action {action!r}: one of "
                                 f"{', '.join(ACTIONS)}")
    _, visible = await authorised(request, ACTIONS[action][0], name)
    return render(request, "confirm.html", d=_one(visible, name), action=action,
                  label=ACTIONS[action][1], domains=visible)


async def act(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    action = (await request.post()).get("action", "")
    if not isinstance(action, str) or action not in ACTIONS:
        raise web.HTTPBadRequest(text=f"unknown action {action!r}: one of "
                                 f"{', '.join(ACTIONS)}")
    await authorised(request, ACTIONS[action][0], name)
    await _console(request).platform.act(action, name)
    raise web.HTTPSeeOther(f"/domain/{name}")


async def alert_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each new alert of the domain, as JSON, as sys-sec logs it."""
    name = request.match_info["name"]
    await authorised(request, Operation.ALERTS, name)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    since = dt.datetime.now(dt.UTC).isoformat()
    await response.write(b": live\n\n")
    async for a in _console(request).platform.alerts(name, since=since, follow=True):
        data = {"timestamp": a.timestamp, "action": a.action, "signature": a.signature,
                "signature_id": a.signature_id, "src": a.src, "dest": a.dest,
                "category": a.category}
        await response.write(f"event: alert\ndata: {json.dumps(data)}\n\n".encode())
    return response


async def report(request: web.Request) -> web.StreamResponse:
    """The parent's page of a domain: what sys-sec blocked, by category and site, and
    charts of blocks per category per hour and per day and of alerts over time."""
    name = request.match_info.get("name", "family")
    _, visible = await authorised(request, Operation.REPORT, name)
    records = await _console(request).platform.eve(name)
    now = dt.datetime.now(dt.UTC)
    built = build_report(records, name, guest_address(records, name), None).as_json()
    series = charts.series(records, now)
    return render(request, "report.html", d=_one(visible, name), report=built,
                  domains=visible,
                  hourly=charts.bars(series.blocked_by_hour, "Blocked requests per hour "
                                     "(last 24 h), by category"),
                  daily=charts.bars(series.blocked_by_day, "Blocked requests per day "
                                    "(last 7 days), by category"),
                  alerts_chart=charts.bars(series.alerts_by_hour, "Alerts per hour "
                                           "(last 24 h)"))


async def provider(request: web.Request) -> web.StreamResponse:
    _, visible = await authorised(request, Operation.PROVIDER_STATUS)
    status = await _console(request).platform.provider_status()
    return render(request, "provider.html", provider=status, domains=visible)


def make_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[headers, errors, sessions],
                          client_max_size=64 * 1024)
    app[CONSOLE] = console
    app.router.add_get("/", index)
    app.router.add_get("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/domain/{name}", domain)
    app.router.add_get("/domain/{name}/confirm", confirm)
    app.router.add_post("/domain/{name}/action", act)
    app.router.add_get("/domain/{name}/alerts", alert_stream)
    app.router.add_get("/report/{name}", report)
    app.router.add_get("/family", report)
    app.router.add_get("/provider", provider)
    app.router.add_static("/static/", STATIC, show_index=False)
    return app


# -- the token socket ----------------------------------------------------------------------

async def token_socket(console: Console, path: Path,
                       owner_group: str = auth.OWNER_GROUP) -> asyncio.Server:
    """Serve login links on `path` (mode 0666): each connection gets one line of JSON,
    {"url": ...} for the connecting uid as the kernel gives it, or {"error": ...}."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            cred = auth.peer_cred(writer.get_extra_info("socket"))
            caller = auth.resolve_caller(cred, owner_group)
            try:
                answer = {"url": console.login_url(caller), "user": caller.label}
            except SessionError as e:
                answer = {"error": str(e)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except OSError as e:
            log.warning("console token socket: %s", e)
        finally:
            writer.close()

    auth.check_socket_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(serve, path=str(path))
    # Anyone may ask: the link logs in the uid the kernel names, nobody else.
    os.chmod(path, 0o666)
    return server


# -- the program ---------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperwall-console",
                                description="Serve Hyperwall's web console on loopback.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--socket", type=Path,
                   default=Path(os.environ.get("HYPERWALL_SOCKET", str(DEFAULT_SOCKET))),
                   help="dom0d's control socket")
    p.add_argument("--token-socket", type=Path,
                   default=Path(os.environ.get("HYPERWALL_CONSOLE_SOCKET",
                                               str(DEFAULT_CONSOLE_SOCKET))),
                   help="where `hyperwall console` asks for login links")
    p.add_argument("--owner-group", default=auth.OWNER_GROUP)
    return p


async def serve(args: argparse.Namespace, ready: Callable[[str], None] | None = None) -> None:
    platform = Platform(args.socket)
    console = Console(platform, base_url=f"http://127.0.0.1:{args.port}")
    runner = web.AppRunner(make_app(console), access_log=None)
    await runner.setup()
    # Loopback only: the console is for the person at this machine.
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    tokens = await token_socket(console, args.token_socket, args.owner_group)
    follower = asyncio.ensure_future(platform.follow_starts())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("console on %s, login links on %s", console.base_url, args.token_socket)
    if ready is not None:
        ready(console.base_url)
    try:
        await stop.wait()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        tokens.close()
        args.token_socket.unlink(missing_ok=True)
        await runner.cleanup()
        await platform.close()


def main() -> int:
    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(f"hyperwall-console on http://127.0.0.1:{args.port}", flush=True)
    asyncio.run(serve(args))
    return 0


