"""py2neo 2021.2 (Bolt 4.3 at most; routing through ``dbms.routing.getRoutingTable``)."""

from __future__ import annotations

from conformance.harness import CLIENTS, ClientSpec, scenario_test
from conformance.scenario import Profile

PROGRAM = CLIENTS / "py2neo_client.py"
PROFILE = Profile(protocol="4.3", element_ids=False)

SPECS = [
    ClientSpec("py2neo-bolt", PROGRAM, PROFILE, version_prefix="2021.2."),
    ClientSpec("py2neo-routing", PROGRAM, PROFILE, scheme="neo4j", version_prefix="2021.2."),
    ClientSpec(
        "py2neo-tls",
        PROGRAM,
        PROFILE,
        scheme="bolt+ssc",
        proxy="tls_proxy",
        version_prefix="2021.2.",
    ),
]

test_scenario = scenario_test(SPECS)
