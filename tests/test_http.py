"""HTTP on the Bolt port (issue 11): discovery on /, metrics, health, the CORS preflight.
Real sockets through ``Sniffer`` (as tests/test_layers.py), ``HttpService`` with fake checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy import metrics
from proxy.net.http import HttpService, parse_head, serve_http
from proxy.net.layers import Sniffer
from tests.test_layers import Echo, read_until

pytestmark = pytest.mark.timeout(20)


class Checks:
    def __init__(self) -> None:
        self.backend_error: Exception | None = None
        self.hang = False
        self.problems: list[dict[str, Any]] = []

    async def ping(self) -> None:
        if self.hang:
            await asyncio.sleep(60)
        if self.backend_error is not None:
            raise self.backend_error

    async def stream_problems(self) -> list[dict[str, Any]]:
        return self.problems


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, Checks]]:
    checks = Checks()
    service = HttpService(
        lambda: {"bolt_direct": "bolt://x"}, ping=checks.ping, problems=checks.stream_problems
    )
    srv = await asyncio.get_running_loop().create_server(
        lambda: Sniffer(Echo, tls=None, discovery=service.discovery, http=service),
        "127.0.0.1",
        0,
    )
    yield srv.sockets[0].getsockname()[1], checks
    srv.close()
    await srv.wait_closed()


async def request(port: int, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    response = await read_until(reader, 1 << 20)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


async def test_discovery_stays_on_root(served: tuple[int, Checks]) -> None:
    port, _ = served
    status, _, body = await request(port, get("/"))
    assert status.startswith("HTTP/1.1 200") and json.loads(body) == {"bolt_direct": "bolt://x"}


async def test_liveness_and_readiness(served: tuple[int, Checks]) -> None:
    port, checks = served
    status, _, body = await request(port, get("/health/live"))
    assert status.startswith("HTTP/1.1 200") and json.loads(body) == {"status": "live"}
    status, _, body = await request(port, get("/health/ready"))
    assert status.startswith("HTTP/1.1 200") and json.loads(body) == {"status": "ready"}

    checks.backend_error = ConnectionRefusedError("FalkorDB is unreachable")
    checks.problems = [{"stream": "s", "problem": "the stream stopped on an error"}]
    status, _, body = await request(port, get("/health/ready"))
    assert status.startswith("HTTP/1.1 503")
    document = json.loads(body)
    assert document["status"] == "unavailable"
    assert document["problems"] == [
        {"component": "backend", "problem": "FalkorDB is unreachable"},
        {"component": "stream", "stream": "s", "problem": "the stream stopped on an error"},
    ]


async def test_readiness_gives_up_on_a_backend_that_hangs(served: tuple[int, Checks]) -> None:
    port, checks = served
    checks.hang = True
    status, _, body = await request(port, get("/health/ready"))
    assert status.startswith("HTTP/1.1 503")
    assert json.loads(body)["problems"] == [
        {"component": "backend", "problem": "no answer within 2 s"}
    ]


async def test_metrics_are_the_prometheus_exposition(served: tuple[int, Checks]) -> None:
    port, _ = served
    metrics.PROXY.failure("Neo.ClientError.Test.Http")
    status, headers, body = await request(port, get("/metrics"))
    assert status.startswith("HTTP/1.1 200")
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in metrics.parse(body.decode())}
    samples = {
        s.labels["code"]: s.value
        for s in families["boltstream_failures"].samples
        if s.name == "boltstream_failures_total"
    }
    assert samples["Neo.ClientError.Test.Http"] >= 1


async def test_unknown_path_is_404(served: tuple[int, Checks]) -> None:
    port, _ = served
    status, _, _ = await request(port, get("/nope"))
    assert status.startswith("HTTP/1.1 404")


async def test_cors_preflight_is_answered(served: tuple[int, Checks]) -> None:
    port, _ = served
    status, headers, body = await request(
        port,
        b"OPTIONS / HTTP/1.1\r\nHost: localhost:7687\r\nOrigin: http://localhost:8080\r\n"
        b"Access-Control-Request-Method: GET\r\n"
        b"Access-Control-Request-Headers: content-type\r\n\r\n",
    )
    assert status.startswith("HTTP/1.1 204") and body == b""
    assert headers["access-control-allow-origin"] == "*"
    assert "GET" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "content-type"


async def test_bolt_still_passes_through(served: tuple[int, Checks]) -> None:
    port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x60\x60\xb0\x17")
    assert await read_until(reader, 9) == b"echo:\x60\x60\xb0\x17"
    writer.close()


async def test_a_port_of_its_own() -> None:
    service = HttpService(lambda: {})
    server = await serve_http(service, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        status, _, body = await request(port, get("/health/live"))
        assert status.startswith("HTTP/1.1 200") and json.loads(body) == {"status": "live"}
        status, _, _ = await request(port, get("/metrics"))
        assert status.startswith("HTTP/1.1 200")
    finally:
        server.close()
        await server.wait_closed()


def test_parse_head() -> None:
    assert parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n") == (
        "GET",
        "/metrics",
        {"host": "a", "x-y": "z"},
    )
    assert parse_head(b"nonsense\r\n\r\n") is None
