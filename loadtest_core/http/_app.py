"""``POST /stop/execution`` (Testinium-style batch stop) as a Starlette application.

Order of checks: route and method, then the bearer token (constant time, before
the body is read), then the content type, then the body (size-capped while it
streams, strict JSON, strict schema). Every answer, errors included, is the
``{"data": ..., "errors": ...}`` envelope; no framework default reaches a client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loadtest_core import (
    Engine,
    LoadtestError,
    MemoryStore,
    Role,
    StoreUnavailable,
    TokenAuth,
)
from loadtest_core._auth import bearer_token, principal_of
from loadtest_core.http._openapi import openapi

__all__ = ["PlanResolver", "TagPlanResolver", "create_app"]

log = logging.getLogger("loadtest_core.http")
MAX_ID = 2**63 - 1

# The one table from core errors to HTTP answers; anything else is a 500.
ERROR_STATUS: dict[type[LoadtestError], tuple[int, str, str]] = {
    StoreUnavailable: (503, "SERVICE_UNAVAILABLE", "the store cannot take writes; try again later"),
}
_INTERNAL = (500, "INTERNAL_SERVER_ERROR", "an unexpected error occurred")


def http_error_of(exc: BaseException) -> tuple[int, str, str]:
    """Status, code and message for an error raised while serving a request."""
    for cls in type(exc).__mro__:
        found = ERROR_STATUS.get(cls)
        if found is not None:
            return found
    return _INTERNAL


class PlanResolver(Protocol):
    """Maps a plan id to the ids of the tests that execute it."""

    def tests_for_plan(self, engine: Engine, plan_id: int) -> list[str]: ...


class TagPlanResolver:
    """The default: a plan's tests are those tagged ``plan_id=<id>`` (the tag key is settable)."""

    def __init__(self, key: str = "plan_id") -> None:
        self.key = key

    def tests_for_plan(self, engine: Engine, plan_id: int) -> list[str]:
        return engine.tests_with_tag(self.key, str(plan_id))


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def envelope(
    status: int, errors: list[dict[str, Any]] | None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"data": None, "errors": errors}, status_code=status, headers=headers)


def _error(code: str, message: str, plan: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "message": message}
    if plan is not None:
        out["planId"] = plan
    return out


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise BadRequest(f"duplicate key {key!r}")
        seen[key] = value
    return seen


class _Float(float):
    """A JSON number with a fraction or exponent: never a plan id."""


def parse_plans(raw: bytes, max_plans: int) -> list[int]:
    """The distinct plan ids of a request body, in order; BadRequest says what is wrong."""
    if not raw.strip():
        raise BadRequest("the body is empty")
    try:
        text = raw.decode("utf-8")
        body = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_Float,
            parse_constant=_reject_constant,
        )
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # e.g. an integer past the interpreter's digit limit
        reason = str(exc).split(":")[0][:100]
        raise BadRequest(f"the body holds a value this endpoint cannot read: {reason}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if "plans" not in body:
        raise BadRequest("plans: required")
    plans = body["plans"]
    if not isinstance(plans, list):
        raise BadRequest("plans: must be a list of plan ids")
    if not plans:
        raise BadRequest("plans: must not be empty")
    if len(plans) > max_plans:
        raise BadRequest(f"plans: at most {max_plans} ids")
    out: dict[int, None] = {}
    for i, plan in enumerate(plans):
        if type(plan) is not int:
            raise BadRequest(f"plans[{i}]: must be an integer, got {json.dumps(plan)[:40]}")
        if not 1 <= plan <= MAX_ID:
            raise BadRequest(f"plans[{i}]: must be in 1..{MAX_ID}")
        out[plan] = None
    return list(out)


def stop_plans(
    engine: Engine, resolver: PlanResolver, plans: list[int], principal: str
) -> list[dict[str, Any]]:
    """Stop every non-terminal test of each plan; per-plan failures as envelope errors.

    ``Engine.stop_unfinished`` reads each test first: a finished one is skipped
    with no rejection row, so retrying a batch of finished plans costs reads only.
    """
    errors: list[dict[str, Any]] = []
    for plan in plans:
        test_ids = resolver.tests_for_plan(engine, plan)
        if not test_ids:
            errors.append(_error("NOT_FOUND", f"plan {plan} has no tests", plan))
            continue
        if not engine.stop_unfinished(test_ids, principal=principal):
            errors.append(_error("ACTION_NOT_AVAILABLE", f"plan {plan} is not running", plan))
    return errors


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise BadRequest(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"the body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or cut by the server's body timeout: nobody reads this
        raise BadRequest("the connection closed before the body was complete") from None
    return b"".join(chunks)


def _json_content_type(value: str | None) -> bool:
    if value is None:
        return False
    kind, _, params = value.partition(";")
    if kind.strip().lower() != "application/json":
        return False
    for param in filter(None, (p.strip() for p in params.split(";"))):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val.strip().strip('"').lower() != "utf-8":
            return False
    return True


def create_app(
    engine: Engine,
    auth: TokenAuth,
    resolver: PlanResolver | None = None,
    *,
    max_body: int = 65536,
    max_plans: int = 1000,
    inline_plans: int = 16,
    offload: bool | None = None,
) -> Starlette:
    """The ASGI application serving ``/stop/execution``, ``/openapi.json`` and ``/healthz``.

    ``offload`` runs the engine on the threadpool; by default whenever the store
    may block (anything but a ``MemoryStore``), so one slow store call never
    stalls the event loop and ``/healthz``. Over a ``MemoryStore`` batches of up
    to ``inline_plans`` plans run inline (a thread hop costs more than the stops).
    """
    plans_of: PlanResolver = TagPlanResolver() if resolver is None else resolver
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if offload is None:
        offload = not isinstance(engine.store, MemoryStore)
    inline = 0 if offload else inline_plans
    probe: Callable[[], None] | None = getattr(engine.store, "probe", None)

    async def stop_execution(request: Request) -> Response:
        token = bearer_token(request.headers.get("authorization"))
        if not auth.insecure and auth.role_of(token) is not Role.USER:
            return envelope(
                401,
                [_error("UNAUTHORIZED", "a valid user bearer token is required")],
                unauthorized,
            )
        try:
            if not _json_content_type(request.headers.get("content-type")):
                raise BadRequest("Content-Type must be application/json")
            plans = parse_plans(await _read_body(request, max_body), max_plans)
        except BadRequest as exc:
            return envelope(400, [_error("INVALID_REQUEST", exc.message)])
        principal = principal_of(token)
        try:
            if len(plans) <= inline:  # a few short in-memory commits: cheaper than a thread hop
                errors = stop_plans(engine, plans_of, plans, principal)
            else:
                errors = await run_in_threadpool(stop_plans, engine, plans_of, plans, principal)
        except Exception as exc:
            return await server_error(request, exc)
        return envelope(200, errors or None)

    async def healthz(request: Request) -> Response:
        """ok, or 503 in the envelope when the store cannot take writes (a stat, no SQL)."""
        if probe is not None:
            try:
                probe()
            except StoreUnavailable as exc:
                status, code, _ = http_error_of(exc)
                return envelope(status, [_error(code, exc.message)])
        return JSONResponse({"status": "ok"})

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi(max_body, max_plans))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        code = codes.get(exc.status_code, "INVALID_REQUEST")
        return envelope(exc.status_code, [_error(code, str(exc.detail))], exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        status, code, message = http_error_of(exc)
        if status == 500:
            log.exception("unexpected failure", exc_info=exc)
        else:
            log.warning("%s: %s", code, exc)
        return envelope(status, [_error(code, message)])

    handlers: dict[Any, Callable[..., Any]] = {
        HTTPException: http_error,
        Exception: server_error,
    }
    return Starlette(
        routes=[
            Route("/stop/execution", stop_execution, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
        ],
        exception_handlers=handlers,
    )
