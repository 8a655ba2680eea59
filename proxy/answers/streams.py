"""Stream clauses inside transactions: which answer at once and which wait for COMMIT.

The clauses themselves are answered by ``proxy.streams.handler.StreamClauseHandler``. Inside an
explicit transaction (Neo4j Browser's editor, the drivers' ``execute_query`` and transaction
functions) the session asks ``deferred_until_commit``:

* clauses that only read (``SHOW STREAMS``, ``SHOW STREAM ... OFFSETS``, ``TEST STREAM``,
  ``CHECK STREAM``, ``CALL mg.kafka_stream_info``, and anything else that is not listed
  below) answer at once, and see the streams as committed;
* clauses that change streams answer at once with an empty result and take effect at COMMIT,
  in the order they were run, after the transaction's graph statements have committed. A
  ROLLBACK, a RESET or a failure discards them.

When one of them fails at COMMIT, COMMIT answers its FAILURE: the graph statements and the
stream clauses before it stay applied, the failing one and those after it are not.
"""

from __future__ import annotations

from typing import Any

import grammar
from bolt.errors import BoltError, ClientError
from grammar import procedures
from proxy.answers.router import LocalHandler
from proxy.streams.handler import StreamClauseHandler

CHANGES_STREAMS: tuple[type[Any], ...] = (
    grammar.CreateStream,
    grammar.CreateKafkaStream,
    grammar.DropStream,
    grammar.StartStream,
    grammar.StopStream,
    grammar.StartAllStreams,
    grammar.StopAllStreams,
    procedures.KafkaSetStreamOffset,
    grammar.AlterStream,
    grammar.AlterStreamOffset,
    grammar.AlterStreamSkip,
)


def deferred_until_commit(handler: LocalHandler, parsed: Any) -> bool:
    """True when, inside an explicit transaction, this clause must wait for COMMIT."""
    return isinstance(handler, StreamClauseHandler) and isinstance(parsed, CHANGES_STREAMS)


def failed_at_commit(error: BoltError, position: int, total: int) -> ClientError:
    """The FAILURE COMMIT answers when the ``position``-th (1-based) of ``total`` deferred
    stream clauses failed: its own code, and what was and was not applied."""
    applied = "the transaction's graph statements"
    if position > 1:
        applied += f" and its first {position - 1} stream clause(s)"
    rest = " and the ones after it" if position < total else ""
    return ClientError(
        error.code, f"{error.message} (COMMIT applied {applied}; not this stream clause{rest})"
    )
