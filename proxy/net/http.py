"""What the proxy answers over HTTP on its Bolt port (and, optionally, a port of its own).

Neo4j answers a plain ``GET`` on its Bolt port with a discovery document (Neo4j Browser reads
it); the proxy does too, on ``/``. Besides (README "Operating streams"):

* ``GET /metrics``: the Prometheus exposition (``proxy.metrics``);
* ``GET /health/live``: 200 while the process serves;
* ``GET /health/ready``: 200 when the backend answers and no stream that should run is in
  ``error`` or unable to reach its broker or graph; else 503 with a JSON body naming what is
  wrong (``{"status": "unavailable", "problems": [...]}``);
* ``OPTIONS`` (a browser's CORS preflight): 204 with CORS headers that allow any origin, the
  methods above and the headers asked for.

Anything else gets 404. ``HttpService.answer`` is the whole behaviour; ``net.layers`` and
``serve_http`` only carry bytes. Every answer closes the connection (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from proxy import metrics

log = logging.getLogger("boltstream")

MAX_REQUEST_HEAD = 16 * 1024  # bytes of request line and headers read, at most
READY_TIMEOUT = 2.0  # seconds the backend has to answer a readiness check
_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encode(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Unknown')}"]
        if self.status != 204:
            lines.append(f"Content-Type: {self.content_type}")
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Access-Control-Allow-Origin: *")
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _json(status: int, document: Any) -> Response:
    return Response(status, json.dumps(document, ensure_ascii=False).encode())


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, path without query string, headers with lower-case names) of a request head,
    or None if it is not one."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    request_line, _, rest = text.partition("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers: dict[str, str] = {}
    for line in rest.split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1].split("?", 1)[0], headers


class HttpService:
    """The HTTP answers. ``discovery()``: the discovery document; ``ping()``: raises when the
    backend does not answer; ``problems()``: what keeps streams from running (the engine's)."""

    def __init__(
        self,
        discovery: Callable[[], dict[str, Any]],
        *,
        ping: Callable[[], Awaitable[None]] | None = None,
        problems: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self.discovery = discovery
        self.ping = ping
        self.problems = problems

    async def answer(self, method: str, path: str, headers: dict[str, str]) -> Response:
        if method == "OPTIONS":
            return self.preflight(headers)
        if method not in ("GET", "HEAD"):
            return Response(405, b"", headers=[("Allow", "GET, OPTIONS")])
        if path in ("", "/"):
            return _json(200, self.discovery())
        if path == "/metrics":
            return Response(200, await metrics.render(), metrics.CONTENT_TYPE)
        if path == "/health/live":
            return _json(200, {"status": "live"})
        if path == "/health/ready":
            return await self.ready()
        return _json(404, {"error": f"no such path: {path}"})

    @staticmethod
    def preflight(headers: dict[str, str]) -> Response:
        """A CORS preflight: any origin, the methods served here, the headers asked for."""
        allowed = [
            ("Access-Control-Allow-Methods", "GET, OPTIONS"),
            ("Access-Control-Max-Age", "86400"),
        ]
        asked = headers.get("access-control-request-headers")
        if asked:
            allowed.append(("Access-Control-Allow-Headers", asked))
        return Response(204, headers=allowed)

    async def ready(self) -> Response:
        problems: list[dict[str, Any]] = []
        if self.ping is not None:
            try:
                await asyncio.wait_for(self.ping(), READY_TIMEOUT)
            except Exception as exc:
                reason = "no answer within 2 s" if isinstance(exc, TimeoutError) else str(exc)
                problems.append({"component": "backend", "problem": reason[:500]})
        if self.problems is not None:
            try:
                for found in await asyncio.wait_for(self.problems(), READY_TIMEOUT):
                    problems.append({"component": "stream", **found})
            except Exception as exc:
                problems.append({"component": "streams", "problem": f"cannot tell: {exc}"})
        if problems:
            return _json(503, {"status": "unavailable", "problems": problems})
        return _json(200, {"status": "ready"})


async def respond(service: HttpService, head: bytes, write: Callable[[bytes], None]) -> None:
    """Answer one request whose head (up to the blank line) is ``head``; ``write`` sends."""
    parsed = parse_head(head)
    if parsed is None:
        response = Response(400, b"")
    else:
        method, path, headers = parsed
        try:
            response = await service.answer(method, path, headers)
        except Exception:
            log.exception("HTTP %s %s failed", method, path)
            response = _json(503, {"status": "unavailable", "problems": ["internal error"]})
        if method == "HEAD":
            response = Response(response.status, b"", response.content_type, response.headers)
    write(response.encode())


async def serve_http(service: HttpService, host: str, port: int) -> asyncio.Server:
    """Serve ``service`` alone on ``host:port`` (``--metrics-listen``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            await respond(service, head[:MAX_REQUEST_HEAD], writer.write)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_HEAD)
