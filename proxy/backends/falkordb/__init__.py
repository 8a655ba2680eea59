"""FalkorDB as a query backend: the proxy speaks FalkorDB's own protocol (RESP) and is the Bolt
server itself. ``FalkorDBBackend`` is the backend; the other modules are its parts."""

from proxy.backends.falkordb.backend import FalkorDBBackend, ServerProcess
from proxy.backends.falkordb.decoding import decode_duration
from proxy.backends.falkordb.errors import classify_error
from proxy.backends.falkordb.params import PreparedQuery, civil_from_days, prepare_query
from proxy.backends.falkordb.stats import parse_stats, query_type

__all__ = [
    "FalkorDBBackend",
    "PreparedQuery",
    "ServerProcess",
    "civil_from_days",
    "classify_error",
    "decode_duration",
    "parse_stats",
    "prepare_query",
    "query_type",
]
