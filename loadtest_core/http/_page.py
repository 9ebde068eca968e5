"""The status page: tests, their history and a Stop button, under ``/ui/``.

Server-rendered HTML with no framework. Auth is the user token: an
``Authorization: Bearer`` header, or a session cookie set by the token prompt
(``TokenAuth.session``: HttpOnly, SameSite=Strict, Secure over HTTPS, 12 h).
Every POST also needs the form's CSRF token (derived from the session) and,
when the browser sends them, a same-origin ``Origin`` / ``Sec-Fetch-Site``.
Pages refresh their live part every few seconds with ``fetch`` (page.js); a
strict Content-Security-Policy allows no inline script or style.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from loadtest_core import (
    EXECUTION,
    TERMINAL,
    Engine,
    InvalidArgument,
    LogRecord,
    NotFound,
    Rejected,
    Role,
    Status,
    Test,
    TokenAuth,
)
from loadtest_core._auth import bearer_token, principal_of
from loadtest_core._status import LIFECYCLE

__all__ = ["page_routes"]

COOKIE = "loadtest_core_session"
SESSION_SECONDS = 12 * 3600
PAGE_SIZE = 50
REFRESH_SECONDS = 5
_ORDER = LIFECYCLE
_GROUPS = {
    "active": [*EXECUTION, Status.STOPPING],
    "finished": sorted(TERMINAL, key=lambda s: s.value),
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send Origin: null
    "Cache-Control": "no-store",
}
_MESSAGES = {
    "stopped": "Stop requested.",
    "not-running": "That test is not running: nothing to stop.",
    "not-found": "That test no longer exists.",
    "bad-form": "The form expired; try again.",
}

CSS = """
:root { --fg: #1d2330; --muted: #5f6b7a; --line: #dde2ea; --bg: #f6f8fb; --accent: #2458d3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.2rem;
         background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.05rem; margin: 0; }
header h1 a { color: inherit; text-decoration: none; }
header .right { margin-left: auto; display: flex; gap: .8rem; align-items: center;
                color: var(--muted); }
main, .controls { padding: .8rem 1.2rem; }
.controls form { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end; }
label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted); }
input, select, button { font: inherit; padding: .3rem .5rem; border: 1px solid var(--line);
                        border-radius: 4px; background: #fff; }
button { cursor: pointer; }
button.stop { background: #c62828; color: #fff; border-color: #c62828; }
button.link { border: none; background: none; color: var(--accent); padding: 0; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-size: .75rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td.num, th.num { text-align: right; }
a { color: var(--accent); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85em; }
.badge { display: inline-block; padding: .05rem .45rem; border-radius: 999px; font-size: .75rem;
         font-weight: 600; color: #fff; background: #6b7280; white-space: nowrap; }
.s-CREATED { background: #6b7280; } .s-INITIATED, .s-PREPARING, .s-WAITING { background: #0277bd; }
.s-RUNNING { background: #2e7d32; } .s-FINISHING, .s-POST_PROCESSING { background: #00796b; }
.s-STOPPING { background: #ef6c00; } .s-LOST { background: #d81b60; }
.s-DONE { background: #1b5e20; } .s-FAILED { background: #b71c1c; }
.s-STOPPED { background: #5e35b1; } .s-AUTOSTOPPED { background: #795548; }
.s-CANCELLED { background: #455a64; } .s-DELETING { background: #212121; }
.chips { display: flex; flex-wrap: wrap; gap: .4rem; margin-bottom: .8rem; }
.chips a { text-decoration: none; }
.chip { display: inline-flex; gap: .35rem; align-items: center; background: #fff;
        border: 1px solid var(--line); border-radius: 999px; padding: .1rem .5rem .1rem .15rem; }
.muted { color: var(--muted); }
.msg { padding: .5rem .8rem; border-radius: 4px; background: #e8f0fe; margin-bottom: .8rem; }
.msg.error { background: #fdecea; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; background: #fff;
     border: 1px solid var(--line); padding: .8rem 1rem; margin: 0 0 1rem; }
dt { color: var(--muted); } dd { margin: 0; }
h2 { font-size: 1rem; margin: 1.2rem 0 .5rem; }
.login { max-width: 24rem; margin: 4rem auto; background: #fff; border: 1px solid var(--line);
         padding: 1.2rem; border-radius: 6px; }
.login form { display: flex; flex-direction: column; gap: .8rem; }
.rejected td { color: var(--muted); }
.pager { margin-top: .8rem; }
"""

JS = """
(function () {
  var every = REFRESH * 1000;
  var pause = document.getElementById('pause');
  var stamp = document.getElementById('updated');
  function tick() {
    var live = document.getElementById('live');
    if (!live || (pause && pause.checked) || document.hidden) { return; }
    fetch(location.href, {headers: {'X-Partial': '1'}, credentials: 'same-origin'})
      .then(function (r) {
        if (r.status === 401) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (text === null || text === undefined) { return; }
        live.innerHTML = text;
        if (stamp) { stamp.textContent = new Date().toTimeString().slice(0, 8); }
      })
      .catch(function () {});
  }
  setInterval(tick, every);
  document.addEventListener('submit', function (e) {
    var form = e.target;
    if (form.classList && form.classList.contains('stop-form')) {
      if (!window.confirm('Stop test ' + form.getAttribute('data-test') + '?')) {
        e.preventDefault();
      }
    }
  });
})();
""".replace("REFRESH", str(REFRESH_SECONDS))


ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#2458d3"/>'
    '<path d="M3 11l3-4 3 2 4-6" stroke="#fff" stroke-width="2" fill="none"/></svg>'
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _badge(status: Status | str) -> str:
    name = status.name if isinstance(status, Status) else status
    return f'<span class="badge s-{_e(name)}">{_e(name)}</span>'


def _csrf(session: str) -> str:
    return hashlib.sha256(f"loadtest-core csrf {session}".encode()).hexdigest()[:32]


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    # host and port only: behind a TLS proxy the page is https while this server sees http
    _, sep, host = origin.partition("://")
    own = request.headers.get("host", "")
    return bool(sep) and hmac.compare_digest(host.encode(), own.encode())


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/ui/") and "//" not in value else "/ui/"


def _stoppable(status: Status) -> bool:
    return status not in TERMINAL and status is not Status.DELETING


class _Page:
    def __init__(self, engine: Engine, auth: TokenAuth) -> None:
        self.engine, self.auth = engine, auth

    # --- auth ---------------------------------------------------------------------

    def session_of(self, request: Request) -> str | None:
        """The caller's session key ("" for a bearer token or an open server), None if none."""
        if self.auth.insecure:
            return ""
        token = bearer_token(request.headers.get("authorization"))
        if token is not None and self.auth.role_of(token) is Role.USER:
            return ""
        value = request.cookies.get(COOKIE)
        if self.auth.session_principal(value, time.time()) is not None:
            return value
        return None

    def principal(self, request: Request) -> str:
        """Who stops a test from the page: the same name the token has over gRPC."""
        token = bearer_token(request.headers.get("authorization"))
        if token is not None or self.auth.insecure:
            return principal_of(token)
        found = self.auth.session_principal(request.cookies.get(COOKIE), time.time())
        return found or principal_of(None)

    # --- rendering ----------------------------------------------------------------

    def document(self, title: str, body: str, *, status: int = 200, signed_in: bool) -> Response:
        logout = (
            '<form method="post" action="/ui/logout"><button class="link">Sign out</button></form>'
            if signed_in and not self.auth.insecure
            else ""
        )
        text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · loadtest-core</title>
<link rel="stylesheet" href="/ui/static/page.css">
<link rel="icon" href="/ui/static/icon.svg" type="image/svg+xml"></head>
<body><header><h1><a href="/ui/">loadtest-core</a></h1>
<div class="right"><label class="inline"><span>
<input type="checkbox" id="pause"> pause refresh</span></label>
<span>updated <span id="updated">{_e(time.strftime("%H:%M:%S"))}</span></span>{logout}</div>
</header>
{body}
<script src="/ui/static/page.js"></script></body></html>"""
        return HTMLResponse(text, status_code=status, headers=_HEADERS)

    def login(self, next_url: str, error: str = "", status: int = 200) -> Response:
        message = f'<div class="msg error">{_e(error)}</div>' if error else ""
        body = f"""<div class="login"><h2>Sign in</h2>{message}
<form method="post" action="/ui/login">
<label>User token<input type="password" name="token" autocomplete="current-password"
 required autofocus></label>
<input type="hidden" name="next" value="{_e(_safe_next(next_url))}">
<button type="submit">Sign in</button>
<p class="muted">The token given to <code>serve --user-token</code>. The browser keeps a
session cookie for 12 hours, not the token.</p>
</form></div>"""
        return self.document("Sign in", body, status=status, signed_in=False)

    def stop_form(self, test_id: str, session: str, back: str) -> str:
        return (
            f'<form method="post" action="/ui/tests/{_e(test_id)}/stop" class="stop-form" '
            f'data-test="{_e(test_id)}"><input type="hidden" name="csrf" value="{_csrf(session)}">'
            f'<input type="hidden" name="next" value="{_e(back)}">'
            '<button class="stop" type="submit">Stop</button></form>'
        )

    # --- list ---------------------------------------------------------------------

    def list_query(self, params: dict[str, str]) -> tuple[str, str]:
        """The engine filter for the form's fields, and an error for the form ("" if none)."""
        clauses = []
        chosen = params.get("status", "")
        if chosen in _GROUPS:
            names = ", ".join(f'"{s.name}"' for s in _GROUPS[chosen])
            clauses.append(f"summary.status IN ({names})")
        elif chosen:
            if chosen not in Status.__members__:
                return "", f"unknown status {chosen!r}"
            clauses.append(f'summary.status = "{chosen}"')
        tag = params.get("tag", "").strip()
        if tag:
            key, sep, value = tag.partition("=")
            if not sep or not key.strip():
                return "", "a tag filter is KEY=VALUE, e.g. plan_id=42"
            clauses.append(f"details.tags.{key.strip()}:{_quoted(value.strip())}")
        name = params.get("name", "").strip()
        if name:
            clauses.append(f"details.name CONTAINS {_quoted(name)}")
        return " AND ".join(clauses), ""

    def list_live(self, params: dict[str, str], session: str, back: str) -> str:
        flt, error = self.list_query(params)
        tests: list[Test] = []
        token = ""
        if not error:
            try:
                tests, token = self.engine.list_tests(
                    filter=flt, page_size=PAGE_SIZE, page_token=params.get("page", "")
                )
            except InvalidArgument as exc:
                error = exc.message
        counts = self.engine.count_by_status()
        now = self.engine.now()
        chips = "".join(
            f'<a class="chip" href="/ui/?{urlencode({"status": s.name})}">{_badge(s)}'
            f'<span class="count" data-status="{s.name}">{counts[s]}</span></a>'
            for s in _ORDER
            if counts.get(s)
        )
        parts = [f'<div class="chips">{chips or "<span class=muted>no tests yet</span>"}</div>']
        message = _MESSAGES.get(params.get("msg", ""))
        if message:
            parts.append(f'<div class="msg">{_e(message)}</div>')
        if error:
            parts.append(f'<div class="msg error">{_e(error)}</div>')
        rows = []
        for test in tests:
            summary = test.summary
            assert summary is not None
            details = test.details
            tags = " ".join(
                f"<code>{_e(t.key)}={_e(t.value)}</code>" for t in (details.tags if details else ())
            )
            created = summary.created_at.timestamp() if summary.created_at else now
            stop = self.stop_form(test.id, session, back) if _stoppable(summary.status) else ""
            rows.append(
                f'<tr data-test="{_e(test.id)}"><td><a class="mono" href="/ui/tests/{_e(test.id)}">'
                f"{_e(test.id)}</a></td><td>{_e(details.name if details else '')}</td>"
                f'<td class="status">{_badge(summary.status)}</td>'
                f'<td class="mono">{_e(summary.assigned_agent_id)}</td>'
                f'<td class="num" title="{_e(_time(summary.created_at))}">'
                f"{_age(now - created)}</td>"
                f"<td>{tags}</td><td>{stop}</td></tr>"
            )
        if rows:
            parts.append(
                "<table><thead><tr><th>Test</th><th>Name</th><th>Status</th><th>Agent</th>"
                '<th class="num">Age</th><th>Tags</th><th></th></tr></thead><tbody>'
                + "".join(rows)
                + "</tbody></table>"
            )
        elif not error:
            parts.append('<p class="muted">No test matches.</p>')
        if token:
            older = {k: v for k, v in params.items() if k in ("status", "tag", "name")}
            older["page"] = token
            parts.append(f'<p class="pager"><a href="/ui/?{_e(urlencode(older))}">Older →</a></p>')
        return "\n".join(parts)

    def list_controls(self, params: dict[str, str]) -> str:
        chosen = params.get("status", "")
        options = ['<option value="">any</option>']
        for value, label in (("active", "active (running or stopping)"), ("finished", "finished")):
            sel = " selected" if chosen == value else ""
            options.append(f'<option value="{value}"{sel}>{label}</option>')
        for s in _ORDER:
            sel = " selected" if chosen == s.name else ""
            options.append(f'<option value="{s.name}"{sel}>{s.name}</option>')
        return f"""<div class="controls"><form method="get" action="/ui/">
<label>Status<select name="status">{"".join(options)}</select></label>
<label>Tag<input name="tag" placeholder="plan_id=42" value="{_e(params.get("tag", ""))}"></label>
<label>Name contains<input name="name" value="{_e(params.get("name", ""))}"></label>
<button type="submit">Filter</button> <a href="/ui/">clear</a></form></div>"""

    # --- one test -------------------------------------------------------------------

    def detail_live(self, test_id: str, params: dict[str, str], session: str) -> str | None:
        try:
            test = self.engine.get(test_id)
        except (NotFound, InvalidArgument):
            test = None
        try:
            events = self.engine.events(test_id=test_id)
        except InvalidArgument:
            return None
        if test is None and not events:
            return None
        parts = []
        message = _MESSAGES.get(params.get("msg", ""))
        if message:
            parts.append(f'<div class="msg">{_e(message)}</div>')
        now = self.engine.now()
        if test is None:
            parts.append('<div class="msg">This test was deleted; its history remains.</div>')
        else:
            summary = test.summary
            assert summary is not None
            details = test.details
            tags = ", ".join(f"{t.key}={t.value}" for t in (details.tags if details else ()))
            created = summary.created_at.timestamp() if summary.created_at else now
            rows = [
                ("Status", _badge(summary.status)),
                ("Name", _e(details.name if details else "")),
                ("Agent", f'<span class="mono">{_e(summary.assigned_agent_id)}</span>'),
                ("Created", f"{_e(_time(summary.created_at))} ({_age(now - created)} ago)"),
                ("Started", _e(_time(summary.started_at))),
                ("Finished", _e(_time(summary.finished_at))),
                ("Created by", _e(summary.created_by)),
                ("Tags", _e(tags)),
            ]
            if summary.error:
                rows.append(("Error", _e(summary.error)))
            if summary.imbalance_point is not None:
                point = summary.imbalance_point
                rows.append(("Imbalance", _e(f"{point.rps} rps at {_time(point.at)}")))
            parts.append(
                '<dl class="summary">'
                + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
                + "</dl>"
            )
            if _stoppable(summary.status):
                parts.append(self.stop_form(test.id, session, f"/ui/tests/{test.id}"))
        parts.append(self.operation_html(events))
        parts.append(self.events_html(events))
        return "\n".join(parts)

    def operation_html(self, events: list[LogRecord]) -> str:
        op_ids = [
            r.payload["operation_id"]
            for r in events
            if r.event == "stop" and r.to_status is not None and "operation_id" in r.payload
        ]
        if not op_ids:
            return ""
        try:
            op = self.engine.get_operation(op_ids[-1])
        except (NotFound, InvalidArgument):
            return ""
        if not op.done:
            state = "pending: waiting for the agent to stop"
        elif op.error is not None:
            state = f"done with error: {op.error.message}"
        else:
            status = op.response.summary.status.name if op.response and op.response.summary else ""
            state = f"done: {status}"
        return (
            '<h2>Stop operation</h2><dl class="operation">'
            f'<dt>Id</dt><dd class="mono">{_e(op.id)}</dd><dt>State</dt><dd>{_e(state)}</dd>'
            f"<dt>Asked by</dt><dd>{_e(op.created_by)}</dd>"
            f"<dt>Asked at</dt><dd>{_e(_time(op.created_at))}</dd>"
            f"<dt>Updated</dt><dd>{_e(_time(op.modified_at))}</dd></dl>"
        )

    def events_html(self, events: list[LogRecord]) -> str:
        rows = []
        for r in reversed(events):
            change = (
                f"{_badge(r.from_status) if r.from_status else ''} → "
                f"{_badge(r.to_status) if r.to_status else '<em>removed</em>'}"
            )
            when = datetime.fromtimestamp(r.at, UTC)
            cls = "" if r.outcome.value == "accepted" else ' class="rejected"'
            rows.append(
                f"<tr{cls}><td class='num'>{r.seq}</td><td>{_e(_time(when))}</td>"
                f"<td><code>{_e(r.event)}</code></td><td>{change}</td>"
                f"<td>{_e(r.outcome.value)}</td><td class='mono'>{_e(r.actor)}</td>"
                f"<td>{_e(r.reason)}</td></tr>"
            )
        return (
            f"<h2>History ({len(events)} events, newest first)</h2>"
            "<table class='events'><thead><tr><th class='num'>#</th><th>Time</th><th>Event</th>"
            "<th>Change</th><th>Outcome</th><th>Actor</th><th>Reason</th></tr></thead>"
            "<tbody>" + "".join(rows) + "</tbody></table>"
        )


MAX_FORM = 16384


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (the page's only kind), capped in size; the first value of each field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


Handler = Callable[[Request], Awaitable[Response]]


def page_routes(engine: Engine, auth: TokenAuth) -> list[Route]:
    """The routes of the status page, to mount next to the API on one Starlette app."""
    page = _Page(engine, auth)

    def guarded(handler: Callable[[Request, str], Awaitable[Response]]) -> Handler:
        async def run(request: Request) -> Response:
            session = page.session_of(request)
            if session is None:
                if request.headers.get("x-partial") or request.method != "GET":
                    return Response(status_code=401, headers=_HEADERS)
                target = "/ui/login?" + urlencode({"next": _here(request)})
                return RedirectResponse(target, status_code=303, headers=_HEADERS)
            return await handler(request, session)

        return run

    async def index(request: Request, session: str) -> Response:
        params = dict(request.query_params)
        back = _here(request)
        live = await run_in_threadpool(page.list_live, params, session, back)
        if request.headers.get("x-partial"):
            return HTMLResponse(live, headers=_HEADERS)
        body = page.list_controls(params) + f'<main id="live">{live}</main>'
        return page.document("Tests", body, signed_in=True)

    async def detail(request: Request, session: str) -> Response:
        test_id = request.path_params["test_id"]
        live = await run_in_threadpool(
            page.detail_live, test_id, dict(request.query_params), session
        )
        if live is None:
            body = f'<main><div class="msg error">No test {_e(test_id)}.</div></main>'
            return page.document("Not found", body, status=404, signed_in=True)
        if request.headers.get("x-partial"):
            return HTMLResponse(live, headers=_HEADERS)
        body = (
            f'<div class="controls"><a href="/ui/">← all tests</a> · '
            f'<span class="mono">{_e(test_id)}</span></div><main id="live">{live}</main>'
        )
        return page.document(test_id, body, signed_in=True)

    async def stop(request: Request, session: str) -> Response:
        test_id = request.path_params["test_id"]
        form = await _form(request)
        back = _safe_next(str(form.get("next", "")))
        given = str(form.get("csrf", ""))
        if not _same_origin(request) or not hmac.compare_digest(given, _csrf(session)):
            return _back(back, "bad-form", status=403)
        try:
            await run_in_threadpool(engine.stop, test_id, principal=page.principal(request))
        except Rejected:
            return _back(back, "not-running")
        except (NotFound, InvalidArgument):
            return _back(back, "not-found")
        return _back(back, "stopped")

    async def login_form(request: Request) -> Response:
        if page.session_of(request) is not None:
            return RedirectResponse("/ui/", status_code=303)
        return page.login(request.query_params.get("next", "/ui/"))

    async def login(request: Request) -> Response:
        form = await _form(request)
        next_url = _safe_next(str(form.get("next", "")))
        if not _same_origin(request):
            return page.login(next_url, "This sign-in came from another site.", 403)
        raw = str(form.get("token", "")).strip().encode()
        value = auth.session(raw or None, int(time.time()) + SESSION_SECONDS)
        if value is None:
            return page.login(next_url, "That is not a user token of this server.", 401)
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_SECONDS,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/ui/", status_code=303)
        if _same_origin(request):
            response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    async def css(request: Request) -> Response:
        return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})

    async def js(request: Request) -> Response:
        return Response(JS, media_type="text/javascript", headers={"Cache-Control": "max-age=300"})

    async def icon(request: Request) -> Response:
        return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"})

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    return [
        Route("/", root, methods=["GET"]),
        Route("/ui", root, methods=["GET"]),
        Route("/ui/", guarded(index), methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        Route("/ui/static/page.css", css, methods=["GET"]),
        Route("/ui/static/page.js", js, methods=["GET"]),
        Route("/ui/static/icon.svg", icon, methods=["GET"]),
        Route("/favicon.ico", icon, methods=["GET"]),
        Route("/ui/tests/{test_id}", guarded(detail), methods=["GET"]),
        Route("/ui/tests/{test_id}/stop", guarded(stop), methods=["POST"]),
    ]


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _back(url: str, message: str, status: int = 303) -> Response:
    path, _, query = url.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query) if k != "msg"]
    target = f"{path}?{urlencode([*kept, ('msg', message)])}"
    if status == 303:
        return RedirectResponse(target, status_code=303)
    return HTMLResponse(
        f'<p>{_e(_MESSAGES[message])} <a href="{_e(url)}">Back</a></p>',
        status_code=status,
        headers=_HEADERS,
    )
