"""The HTTP side of ``serve``: API, status page and ``/metrics``; one JSON line per request."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from loadtest_core import Engine, TokenAuth
from loadtest_core.http import create_app
from loadtest_core.http._page import page_routes
from loadtest_core.server._metrics import CONTENT_TYPE, Observer

__all__ = ["AccessLog", "web_app"]

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class AccessLog:
    """ASGI middleware: one JSON line per HTTP request (method, path, status, ms, peer)."""

    def __init__(self, app: Any, sink: Callable[[str], None]) -> None:
        self.app, self.sink = app, sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            peer = f"{client[0]}:{client[1]}" if client else ""
            ms = round((time.perf_counter() - started) * 1000, 3)
            self.sink(
                f'{{"http": {json.dumps(scope["method"])}, '
                f'"path": {json.dumps(scope["path"][:512])}, "status": {status}, '
                f'"ms": {ms}, "peer": {json.dumps(peer)}}}'
            )


def web_app(
    engine: Engine,
    auth: TokenAuth,
    observer: Observer | None = None,
    sink: Callable[[str], None] | None = None,
    *,
    max_body: int = 65536,
) -> Any:
    """The ASGI app ``serve`` runs: ``/ui/``, ``/metrics`` and the API app for the rest."""

    async def metrics(request: Request) -> Response:
        assert observer is not None
        return Response(await run_in_threadpool(observer.render), media_type=CONTENT_TYPE)

    routes: list[Any] = list(page_routes(engine, auth))
    if observer is not None:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    routes.append(Mount("/", app=create_app(engine, auth, max_body=max_body)))
    app: Any = Starlette(routes=routes)
    return app if sink is None else AccessLog(app, sink)
