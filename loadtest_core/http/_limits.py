"""The HTTP edge's limits, enforced in uvicorn's httptools protocol before the app runs.

uvicorn (httptools) is the fastest of the servers measured (docs/http.md) but
enforces only the idle keep-alive timeout; it has no header size, header
count, header or body deadline, or connection cap, and answers malformed
requests in plain text. ``HardenedProtocol`` is a thin subclass of its
protocol that adds them, and answers every refusal in the
``{"data": null, "errors": [...]}`` envelope:

- the request line and headers are counted as they arrive (httptools buffers
  an unfinished header internally, so the raw bytes are what is capped):
  over ``max_header_bytes`` → 431 (414 when the URL alone is over), more than
  ``max_headers`` fields → 431;
- a request's headers must be complete within ``header_timeout`` of its first
  byte (of the connection, for the first request) and its body within
  ``body_timeout`` of its headers → 408 and the connection is closed;
- at most ``max_connections`` are open: a new one past the cap evicts the
  connection that has waited longest for its headers (a slowloris), else the
  longest-idle keep-alive one, or is refused with 503 when every connection
  is busy with a request;
- a malformed request (bad request line, NUL in a header, a non-numeric
  Content-Length, Content-Length with chunked) → 400 ``INVALID_REQUEST``;
- a response sent before the request body was read (a 401, a body over the
  app's size cap) closes the connection instead of reading the rest.

The request body's size is the app's to cap (``create_app(max_body=...)``):
it checks the token first, as the contract wants, and uvicorn's flow control
stops reading a connection while 64 KiB of its body wait unread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HardenedProtocol", "HttpLimits", "refusal", "uvicorn_config"]

log = logging.getLogger("loadtest_core.http")

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class HttpLimits:
    """Limits of the HTTP edge; the defaults hold on a 2-core machine with 1,024 files."""

    max_header_bytes: int = 16384
    max_headers: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = 256
    max_body: int = 65536

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_connections", "max_body"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("header_timeout", "body_timeout", "keep_alive"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")


def refusal(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying one error in the envelope; it closes the connection."""
    body = json.dumps({"data": None, "errors": [{"code": code, "message": message}]}).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS.get(status, b""), len(body))
    )
    return head + body


class _Refuse(Exception):
    """Raised from a parser callback to stop parsing and answer with ``refusal(*args)``."""


# After a refusal, what is read and dropped before the connection is closed anyway.
_LINGER_BYTES = 1 << 20
_LINGER_SECONDS = 1.0

# Where a connection is in its current request.
_IDLE, _HEAD, _BODY, _WAIT = "idle", "head", "body", "wait"


class _Gate:
    """The connections of one server: how many are open, and which wait for a request.

    Eviction takes the connection that has waited longest for its headers (a
    slowloris first), then the longest-idle keep-alive connection.
    """

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.open: set[HardenedProtocol] = set()
        self.heads: OrderedDict[HardenedProtocol, None] = OrderedDict()
        self.idle: OrderedDict[HardenedProtocol, None] = OrderedDict()

    def admit(self, proto: HardenedProtocol) -> bool:
        if len(self.open) >= self.limits.max_connections:
            victim = next(iter(self.heads), None) or next(iter(self.idle), None)
            if victim is None:
                return False
            victim.evict()
        self.open.add(proto)
        return True

    def wait(self, proto: HardenedProtocol, *, idle: bool = False) -> None:
        self.busy(proto)
        (self.idle if idle else self.heads)[proto] = None

    def busy(self, proto: HardenedProtocol) -> None:
        self.heads.pop(proto, None)
        self.idle.pop(proto, None)

    def leave(self, proto: HardenedProtocol) -> None:
        self.open.discard(proto)
        self.busy(proto)


class HardenedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of ``HttpLimits`` (see the module)."""

    gate: ClassVar[_Gate]

    @classmethod
    def with_limits(cls, limits: HttpLimits) -> type[HardenedProtocol]:
        """A protocol class for one server: its connections share one gate."""
        return type("HardenedProtocol", (cls,), {"gate": _Gate(limits)})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.gate.limits
        self._phase = _HEAD
        self._head_bytes = 0
        self._url_bytes = 0
        self._field_bytes = 0
        self._fields = 0
        self._timer: asyncio.TimerHandle | None = None
        self._done = False
        self._draining = 0

    # --- connection -----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.gate.admit(self):
            self._refuse(503, "SERVICE_UNAVAILABLE", "too many connections; try again later")
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        self._cancel_timer()
        self.gate.leave(self)
        super().connection_lost(exc)

    def evict(self) -> None:
        """Make room for a new connection: close this one, which is waiting for a request."""
        self._done = True
        self._cancel_timer()
        self.gate.leave(self)
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` in the envelope, unless a response is under way, and close."""
        if self._done:
            return
        self._done = True
        self._cancel_timer()
        self.gate.leave(self)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() sees a disconnect, send() is dropped
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        log.info(
            '{"http": "refused", "status": %d, "code": "%s", "peer": %s}',
            status,
            code,
            json.dumps(f"{self.client[0]}:{self.client[1]}" if self.client else ""),
        )
        self.transport.write(refusal(status, code, message))
        self._linger()

    def _linger(self) -> None:
        """Close a moment after the answer, reading (and dropping) some of what still comes.

        Closing with unread bytes makes the kernel send a reset, which destroys the
        answer in flight: a client still streaming a huge header would never see its
        431. So the answer is followed by end-of-stream, up to 1 MiB is read and
        dropped, then reading pauses, and the connection closes after a second.
        """
        self._draining = _LINGER_BYTES
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self._timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    # --- timers ---------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _await_head(self) -> None:
        self._phase = _HEAD
        self._head_bytes = self._url_bytes = self._field_bytes = self._fields = 0
        self._cancel_timer()
        self._timer = self.loop.call_later(self._limits.header_timeout, self._head_late)
        self.gate.wait(self)

    def _head_late(self) -> None:
        self._timer = None
        if self._head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.evict()  # nothing sent: a quiet close, as for an idle keep-alive connection
            return
        limit = self._limits.header_timeout
        self._refuse(408, "REQUEST_TIMEOUT", f"the request headers took longer than {limit:g} s")

    def _body_late(self) -> None:
        self._timer = None
        limit = self._limits.body_timeout
        self._refuse(408, "REQUEST_TIMEOUT", f"the request body took longer than {limit:g} s")

    # --- data -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._done:
            self._draining -= len(data)
            if self._draining < 0 and not self.transport.is_closing():
                self.transport.pause_reading()  # enough dropped: let the kernel buffers fill
            return
        self._unset_keepalive_if_required()
        if self._phase == _IDLE:
            self._await_head()
        if self._phase == _HEAD:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refuse):
                self._refuse(*cause.args)
            else:
                log.error("HTTP parser callback failed", exc_info=cause)
                self._refuse(400, "INVALID_REQUEST", "malformed HTTP request")
            return
        except httptools.HttpParserUpgrade:
            return  # no upgrade is offered: the request is served as a plain one
        except httptools.HttpParserError as exc:
            self._refuse(400, "INVALID_REQUEST", f"malformed HTTP request: {exc}")
            return
        if self._phase == _HEAD and self._head_bytes > self._limits.max_header_bytes:
            self._too_large()

    def _too_large(self) -> None:
        limit = self._limits.max_header_bytes
        if self._url_bytes > limit:
            self._refuse(414, "REQUEST_TOO_LARGE", f"the URL is longer than {limit} bytes")
        else:
            message = f"the request line and headers are larger than {limit} bytes"
            self._refuse(431, "REQUEST_TOO_LARGE", message)

    # --- parser callbacks -----------------------------------------------------

    def on_message_begin(self) -> None:
        if self._phase != _HEAD:  # the next request on a keep-alive (or pipelining) connection
            self._await_head()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self._limits.max_header_bytes:
            limit = self._limits.max_header_bytes
            raise _Refuse(414, "REQUEST_TOO_LARGE", f"the URL is longer than {limit} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self._limits.max_headers:
            limit = self._limits.max_headers
            raise _Refuse(431, "REQUEST_TOO_LARGE", f"more than {limit} header fields")
        self._field_bytes += len(name) + len(value) + 4
        if self._url_bytes + self._field_bytes > self._limits.max_header_bytes:
            limit = self._limits.max_header_bytes
            message = f"the request line and headers are larger than {limit} bytes"
            raise _Refuse(431, "REQUEST_TOO_LARGE", message)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_timer()
        self.gate.busy(self)
        self._phase = _BODY
        self._timer = self.loop.call_later(self._limits.body_timeout, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_timer()
        self._phase = _WAIT
        super().on_message_complete()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle.response_complete and cycle.more_body and not self.transport.is_closing():
            self._done = True  # answered before the body was read: do not read the rest
            self._cancel_timer()
            self.gate.leave(self)
            self._linger()
            return
        super().on_response_complete()
        if self._phase == _WAIT and not self.transport.is_closing():
            self._phase = _IDLE
            self.gate.wait(self, idle=True)


def uvicorn_config(app: Any, *, host: str, port: int, limits: HttpLimits, **extra: Any) -> Any:
    """A ``uvicorn.Config`` serving ``app`` with ``HardenedProtocol`` and ``limits``."""
    import uvicorn

    options: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "off",
        "access_log": False,
        "ws": "none",
        **extra,
    }
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=HardenedProtocol.with_limits(limits),
        timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
        **options,
    )
