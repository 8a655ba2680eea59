"""The official neo4j driver's asyncio API through the proxy: the common client scenario
(connect, graph values, temporal values and maps, an explicit transaction, an error and
recovery, routing)."""

from __future__ import annotations

import asyncio
import uuid

import neo4j
import pytest
from neo4j.exceptions import CypherSyntaxError

from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(60)


def scenario(uri: str, auth: tuple[str, str]) -> None:
    async def main() -> None:
        label = "Conf" + uuid.uuid4().hex[:8]
        async with neo4j.AsyncGraphDatabase.driver(uri, auth=auth) as driver:
            await driver.verify_connectivity()
            async with driver.session() as session:
                result = await session.run(
                    f"CREATE (a:{label} {{name: 'a', born: date('1990-05-17')}})"
                    f"-[r:KNOWS {{since: 2001}}]->(b:{label} {{name: 'b', tags: ['x', 'y']}}) "
                    "RETURN a, r, b, {k: [1, 2], m: {n: null}} AS m"
                )
                record = await result.single()
                assert record is not None
                assert record["a"]["born"] == neo4j.time.Date(1990, 5, 17)
                assert record["r"].type == "KNOWS" and record["r"]["since"] == 2001
                assert record["b"]["tags"] == ["x", "y"]
                assert record["m"] == {"k": [1, 2], "m": {"n": None}}
                path_result = await session.run(
                    f"MATCH p = (:{label} {{name: 'a'}})-[:KNOWS]->(:{label}) RETURN p"
                )
                path = (await path_result.single())["p"]
                assert [n["name"] for n in path.nodes] == ["a", "b"]

                tx = await session.begin_transaction()
                await (await tx.run(f"CREATE (:{label} {{name: 'c'}})")).consume()
                await tx.commit()
                count = await session.run(f"MATCH (n:{label}) RETURN count(n) AS c")
                assert (await count.single())["c"] == 3

                with pytest.raises(CypherSyntaxError):
                    await (await session.run("RETURN RETURN")).consume()
                again = await session.run("RETURN 'still here' AS s")
                assert (await again.single())["s"] == "still here"

    asyncio.run(main())


def test_async_driver_bolt_scheme(proxy: ProxyProcess) -> None:
    scenario(proxy.bolt_uri, proxy.auth)


def test_async_driver_neo4j_scheme(proxy: ProxyProcess) -> None:
    scenario(proxy.neo4j_uri, proxy.auth)
