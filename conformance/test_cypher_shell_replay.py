"""What cypher-shell 5.x (Java driver 5.2x) sends when it connects, replayed byte-exact from
its handshake offer on (shared/reference/bolt.md §2.3, §10 "cypher-shell"):

handshake (manifest first) -> HELLO + LOGON pipelined -> [neo4j://: ROUTE for the home
database] -> ``CALL db.ping()`` -> ``CALL dbms.licenseAgreementDetails()`` (any error ignored:
RESET) -> ``CALL dbms.components() YIELD versions`` (``versions[0]`` is the banner's version),
each an auto-commit RUN + PULL {n: 1000} carrying cypher-shell's ``tx_metadata``.
"""

from __future__ import annotations

from typing import Any

import pytest

from bolt.messages import Failure, Goodbye, Hello, Ignored, Logon, Pull, Reset, Route, Run
from bolt.versions import Version
from conformance.replay import Replay, check_failure_5_7, check_pull_summary, check_run_success
from conformance.scenario import check_stream_columns
from proxy import NEO4J_COMPAT_VERSION
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(60)

# Java driver / bolt-connection 5.2x: manifest v1, then 5.8..5.0, 4.4..4.2, 3.0.
OFFER = bytes.fromhex("000001FF 00080805 00020404 00000003")
JAVA_SUPPORTS = [Version(5, m) for m in range(9)] + [Version(4, m) for m in (2, 3, 4)]
USER_AGENT = "neo4j-cypher-shell/v5.26.2"
BOLT_AGENT = {
    "product": "neo4j-java/5.28.4-3a7c1a7b35b8b8c4d3d4e4c5c3c6e0f4ce1f5c93",
    "platform": "Linux; 6.1.0-18-amd64; amd64",
    "language": "Java/21.0.5",
    "language_details": "Eclipse Adoptium; OpenJDK 64-Bit Server VM; 21.0.5+11-LTS",
}
TX_METADATA = {"type": "system", "app": "cypher-shell_v5.26.2"}


def check_routing_table(rt: dict[str, Any], proxy: ProxyProcess, db: str) -> None:
    """What the Java (and JS, Python) drivers validate: routers and readers present, addresses
    ``host:port`` reachable by the client (the proxy itself), a positive ttl in seconds."""
    assert type(rt.get("ttl")) is int and rt["ttl"] > 0, rt
    assert rt.get("db", db).lower() == db, rt
    roles = {server["role"]: server["addresses"] for server in rt["servers"]}
    me = f"{proxy.host}:{proxy.port}"
    for role in ("ROUTE", "READ", "WRITE"):
        assert roles.get(role) == [me], f"{role} servers {roles.get(role)} != [{me}]: {rt}"


@pytest.mark.parametrize("scheme", ["neo4j", "bolt"])
def test_cypher_shell_connect(proxy: ProxyProcess, scheme: str) -> None:
    with Replay(proxy.address, JAVA_SUPPORTS) as shell:
        shell.negotiate(OFFER)
        assert shell.version == Version(5, 8), f"negotiated {shell.version}"
        assert shell.manifest is not None and Version(5, 5) not in shell.manifest

        hello_extra: dict[str, Any] = {"user_agent": USER_AGENT, "bolt_agent": BOLT_AGENT}
        if scheme == "neo4j":
            hello_extra["routing"] = {"address": f"{proxy.host}:{proxy.port}"}
        hello, logon = shell.exchange(
            Hello(hello_extra),
            Logon({"scheme": "basic", "principal": proxy.auth[0], "credentials": proxy.auth[1]}),
        )
        # Java's UntrustedServerException / "Unable to extract connection_id" otherwise.
        assert str(hello.metadata.get("server", "")).startswith("Neo4j/"), hello.metadata
        assert isinstance(hello.metadata.get("connection_id"), str), hello.metadata
        assert logon.metadata == {} or "advertised_address" in logon.metadata

        extra: dict[str, Any] = {"tx_metadata": TX_METADATA}
        if scheme == "neo4j":  # the home database, resolved by the driver before any query
            (route,) = shell.exchange(Route({"address": f"{proxy.host}:{proxy.port}"}, [], None))
            rt = route.metadata["rt"]
            check_routing_table(rt, proxy, "neo4j")
            extra["db"] = rt["db"]

        # 1. CALL db.ping(): only ProcedureNotFound would trigger a fallback; any other error
        #    aborts the connect. The summary gives the protocol version and the prompt's db.
        run, pull = shell.exchange(Run("CALL db.ping()", {}, extra), Pull(n=1000))
        assert check_run_success(run.metadata) == ["success"]
        assert pull.records == [[True]]
        check_pull_summary(pull.metadata, db="neo4j")
        bookmark = pull.metadata.get("bookmark")
        assert isinstance(bookmark, str) and bookmark, pull.metadata
        extra["bookmarks"] = [bookmark]

        # 2. CALL dbms.licenseAgreementDetails(): .single(); any error is ignored (RESET).
        run, pull = shell.exchange(
            Run("CALL dbms.licenseAgreementDetails()", {}, extra), Pull(n=1000)
        )
        if isinstance(run.summary, Failure):
            # what Neo4j community answers too
            check_failure_5_7(run.summary, "Neo.ClientError.Procedure.ProcedureNotFound")
            assert isinstance(pull.summary, Ignored), pull.summary
            (reset,) = shell.exchange(Reset())
            assert reset.metadata == {}
        else:
            fields = check_run_success(run.metadata)
            assert "status" in fields and len(pull.records) == 1, (fields, pull.records)
            check_pull_summary(pull.metadata)

        # 3. The banner's server version.
        run, pull = shell.exchange(
            Run("CALL dbms.components() YIELD versions", {}, extra), Pull(n=1000)
        )
        assert check_run_success(run.metadata) == ["versions"]
        assert len(pull.records) >= 1, pull.records
        versions = pull.records[0][0]
        assert isinstance(versions, list) and versions[0] == NEO4J_COMPAT_VERSION, versions
        check_pull_summary(pull.metadata, db="neo4j")

        # The session keeps working for the user's first query, then quits.
        user = {**extra, "tx_metadata": {"type": "user-direct", "app": TX_METADATA["app"]}}
        run, pull = shell.exchange(Run("RETURN 'ready' AS state", {}, user), Pull(n=1000))
        assert check_run_success(run.metadata) == ["state"] and pull.records == [["ready"]]
        check_pull_summary(pull.metadata)
        # Outside :begin, a typed query is an auto-commit RUN: stream clauses answer, with the
        # summary cypher-shell reads (query type, timings, database).
        run, pull = shell.exchange(Run("SHOW STREAMS", {}, user), Pull(n=1000))
        fields = check_run_success(run.metadata)
        check_stream_columns(fields)
        assert all(len(record) == len(fields) for record in pull.records)
        check_pull_summary(pull.metadata, db="neo4j")
        shell.send(Goodbye())
        assert shell.is_closed()
