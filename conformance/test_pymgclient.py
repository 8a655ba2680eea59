"""Memgraph's pymgclient 1.6 (libmgclient: Bolt 4.4/4.3/4.1; transactions as ``BEGIN``/``COMMIT``
query texts), in its default ``autocommit=False`` mode and in auto-commit mode. It runs in a
child process: it is C, and a crash must fail its tests, not pytest."""

from __future__ import annotations

import pytest

from bolt.messages import Hello, Pull, Run, Success
from bolt.versions import Version
from conformance.harness import CLIENTS, ClientSpec, scenario_test
from conformance.replay import Replay
from conformance.scenario import Profile
from tests.support import ProxyProcess

PROGRAM = CLIENTS / "pymgclient_client.py"
# pymgclient shows no server agent, protocol version, counters or query type, and its errors
# carry the server's message only.
PROFILE = Profile(
    protocol=None,
    agent=False,
    element_ids=False,
    counters=False,
    query_type=False,
    error_codes=False,
)

SPECS = [
    ClientSpec("pymgclient-default", PROGRAM, PROFILE, version_prefix="1.6."),
    ClientSpec(
        "pymgclient-autocommit",
        PROGRAM,
        PROFILE,
        version_prefix="1.6.",
        options={"autocommit": True},
    ),
    # sslmode=REQUIRE: TLS without checking the certificate (pymgclient's only TLS mode)
    ClientSpec(
        "pymgclient-tls",
        PROGRAM,
        PROFILE,
        version_prefix="1.6.",
        proxy="tls_proxy",
        options={"tls": True},
    ),
]

test_scenario = scenario_test(SPECS)


# What pymgclient 1.6 sends (captured on loopback), to pin down what its C code dereferences:
# pymgclient's connection_fetch() (src/connection-int.c) reads the summary that ends a query's
# records with mg_value_bool(mg_map_at(summary, "has_more")), with no NULL check (libmgclient
# itself tolerates a missing has_more; pymgclient does not), so a PULL SUCCESS without
# "has_more" kills the client with SIGSEGV. Memgraph always sends it.
MGCLIENT_OFFER = bytes.fromhex("00000404 00000304 00000104 00000001")


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "in-text-transaction"])
def test_query_summary_has_a_boolean_has_more(proxy: ProxyProcess, autocommit: bool) -> None:
    with Replay(proxy.address, [Version(4, 4), Version(4, 3), Version(4, 1)]) as client:
        assert client.negotiate(MGCLIENT_OFFER) == b"\x00\x00\x04\x04"
        (hello,) = client.exchange(
            Hello(
                {
                    "user_agent": "mgclient/1.7.0",
                    "scheme": "basic",
                    "principal": proxy.auth[0],
                    "credentials": proxy.auth[1],
                }
            )
        )
        assert isinstance(hello.summary, Success), hello.summary
        if not autocommit:  # pymgclient's default: the query text BEGIN first
            begin_run, begin_pull = client.exchange(Run("BEGIN", {}, {}), Pull(n=-1))
            assert begin_run.metadata.get("fields") == [], begin_run.metadata
            assert isinstance(begin_pull.summary, Success), begin_pull.summary
        run, pull = client.exchange(Run("RETURN 1 AS x", {}, {}), Pull(n=-1))
        assert run.metadata.get("fields") == ["x"], run.metadata
        assert pull.records == [[1]]
        assert isinstance(pull.summary, Success), pull.summary
        assert type(pull.metadata.get("has_more")) is bool, (
            f"PULL SUCCESS {pull.metadata} has no boolean has_more: pymgclient reads it "
            "unconditionally (NULL dereference, SIGSEGV in mg_value_bool)"
        )
