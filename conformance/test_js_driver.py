"""The JavaScript ``neo4j-driver`` 6.x on Node.js over plain Bolt (bolt:// and neo4j://) and TLS
(bolt+ssc://),
installed from ``conformance/js/package-lock.json`` by ``scripts/setup test``."""

from __future__ import annotations

from conformance.harness import JS, ClientSpec, scenario_test
from conformance.scenario import Profile

PROGRAM = JS / "client.mjs"
PROFILE = Profile(protocol="5.8")

SPECS = [
    ClientSpec("js6-bolt", PROGRAM, PROFILE, interpreter="node", version_prefix="6."),
    ClientSpec(
        "js6-routing", PROGRAM, PROFILE, interpreter="node", scheme="neo4j", version_prefix="6."
    ),
    ClientSpec(
        "js6-tls",
        PROGRAM,
        PROFILE,
        interpreter="node",
        scheme="bolt+ssc",
        proxy="tls_proxy",
        version_prefix="6.",
    ),
]

test_scenario = scenario_test(SPECS)
