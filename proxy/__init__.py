"""boltstream's server side: the asyncio Bolt server, sessions, backends and command line."""

__version__ = "0.1.0"

# The Neo4j version the proxy claims in HELLO and dbms.components. Drivers and tools key
# features off it (Neo4j Browser needs >= 5.0 for SHOW PROCEDURES; the Java driver refuses a
# server agent that does not start with "Neo4j/").
NEO4J_COMPAT_VERSION = "5.26.0"
SERVER_AGENT = f"Neo4j/{NEO4J_COMPAT_VERSION}"
