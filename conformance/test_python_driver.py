"""The official Python driver ``neo4j`` 6.x (sync API) over bolt:// and neo4j://, and the legacy
``neo4j-driver`` 5.28 package (same import name, so it runs from its own virtualenv), in plain
Bolt and over TLS (``neo4j+ssc://``, ``bolt+ssc://``)."""

from __future__ import annotations

from conformance.harness import CLIENTS, ClientSpec, scenario_test
from conformance.scenario import Profile

PROGRAM = CLIENTS / "neo4j_python.py"
PROFILE = Profile(protocol="5.8")

SPECS = [
    ClientSpec("neo4j6-bolt", PROGRAM, PROFILE, version_prefix="6."),
    ClientSpec("neo4j6-routing", PROGRAM, PROFILE, scheme="neo4j", version_prefix="6."),
    ClientSpec(
        "neo4j5.28-bolt", PROGRAM, PROFILE, interpreter="neo4j5_python", version_prefix="5.28."
    ),
    ClientSpec(
        "neo4j5.28-routing",
        PROGRAM,
        PROFILE,
        interpreter="neo4j5_python",
        scheme="neo4j",
        version_prefix="5.28.",
    ),
    # TLS on the proxy's port with a self-signed certificate: the +ssc schemes
    ClientSpec(
        "neo4j6-tls-routing",
        PROGRAM,
        PROFILE,
        scheme="neo4j+ssc",
        proxy="tls_proxy",
        version_prefix="6.",
    ),
    ClientSpec(
        "neo4j5.28-tls",
        PROGRAM,
        PROFILE,
        interpreter="neo4j5_python",
        scheme="bolt+ssc",
        proxy="tls_proxy",
        version_prefix="5.28.",
    ),
]

test_scenario = scenario_test(SPECS)
