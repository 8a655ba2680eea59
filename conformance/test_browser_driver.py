"""The JavaScript ``neo4j-driver`` inside headless Chromium, over WebSocket as Neo4j Browser
connects (``ws://`` to the proxy's Bolt port; ``neo4j://`` routes, then opens WebSockets to the
addresses of the routing table): the driver's browser build, 6.3 and 5.26.0 (the version Neo4j
Browser 2025.x pins), loaded by a page that runs the shared scenario and posts what the driver
showed back to the test (``conformance/clients/browser_client.py``). ``scripts/setup test``
installs Debian's chromium."""

from __future__ import annotations

from conformance.harness import CLIENTS, ClientSpec, scenario_test
from conformance.scenario import Profile

PROGRAM = CLIENTS / "browser_client.py"
JS6 = {"bundle": "neo4j-driver/lib/browser/neo4j-web.min.js"}
JS526 = {"bundle": "neo4j-driver-5.26/lib/browser/neo4j-web.min.js"}

SPECS = [
    ClientSpec(
        "browser-js6-ws",
        PROGRAM,
        Profile(protocol="5.8", websocket="ws"),
        version_prefix="6.3.",
        options=JS6,
        timeout=120,
    ),
    ClientSpec(
        "browser-js6-routing",
        PROGRAM,
        Profile(protocol="5.8", websocket="ws"),
        scheme="neo4j",
        version_prefix="6.3.",
        options=JS6,
        timeout=120,
    ),
    # the driver Neo4j Browser ships, which offers Bolt 5.7 at most
    ClientSpec(
        "browser-js5.26-ws",
        PROGRAM,
        Profile(protocol="5.7", websocket="ws"),
        version_prefix="5.26.0",
        options=JS526,
        timeout=120,
    ),
    ClientSpec(
        "browser-js5.26-routing",
        PROGRAM,
        Profile(protocol="5.7", websocket="ws"),
        scheme="neo4j",
        version_prefix="5.26.0",
        options=JS526,
        timeout=120,
    ),
    # TLS: bolt+s:// and neo4j+s:// make the driver open wss://. A browser has no "trust any
    # certificate" mode, so this Chromium is told to accept the test's self-signed one.
    ClientSpec(
        "browser-js6-wss",
        PROGRAM,
        Profile(protocol="5.8", websocket="wss"),
        scheme="bolt+s",
        proxy="tls_proxy",
        version_prefix="6.3.",
        options={**JS6, "chromium_flags": ["--ignore-certificate-errors"]},
        timeout=120,
    ),
    ClientSpec(
        "browser-js5.26-wss-routing",
        PROGRAM,
        Profile(protocol="5.7", websocket="wss"),
        scheme="neo4j+s",
        proxy="tls_proxy",
        version_prefix="5.26.0",
        options={**JS526, "chromium_flags": ["--ignore-certificate-errors"]},
        timeout=120,
    ),
]

test_scenario = scenario_test(SPECS)
