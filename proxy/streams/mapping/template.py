"""``WITH CYPHER '...'``: the user's Cypher, once per batch, over the batch's messages.

As the Neo4j Connector for Kafka binds them (neo4j_kafka.md section 1.3), each message is
seen by the template as

* ``event`` and ``__value``: the value (decoded by the stream's format; null for a tombstone),
* ``__key``, ``__header`` (a map of header name to text), ``__timestamp`` (milliseconds since
  the epoch: FalkorDB has no zoned date-times; on Neo4j ``datetime({epochMillis:
  __timestamp})`` gives one),
* and, which the connector lacks, ``__topic``, ``__partition``, ``__offset``.

The query run is ``UNWIND $__boltstream_events AS __boltstream_event WITH <bindings> <the
template>``: one row per message, in order, one round trip per batch (runs of messages are
joined by ``cypher.combine``). A message that cannot be decoded is rejected alone. CREATE
checks the template lexically (``mapper.check_template``); beyond that only the backend can
(the proxy does not parse Cypher), so a template that does not run fails its batch, and the
error policy then finds the messages it fails on one at a time. Messages with the same Kafka
key never share one query (FalkorDB's MERGE does not keep row order within a query; see
``cypher``): a keyed topic's updates to one entity apply in order.
"""

from __future__ import annotations

from proxy.streams.mapping import cypher
from proxy.streams.mapping.events import Event
from proxy.streams.outcomes import Accepted, Outcome

MAX_TEMPLATE = 64 * 1024  # characters
_ROW = "__boltstream_event"
_BINDINGS = (
    f"WITH {_ROW}.value AS event, {_ROW}.value AS __value, {_ROW}.key AS __key, "
    f"{_ROW}.header AS __header, {_ROW}.timestamp AS __timestamp, "
    f"{_ROW}.topic AS __topic, {_ROW}.partition AS __partition, "
    f"{_ROW}.offset AS __offset"
)


class BadTemplate(ValueError):
    """A template refused at CREATE; the message says why."""


class Template:
    """A checked template; ``outcome(event)`` is one message's query."""

    def __init__(self, text: str) -> None:
        self.text = check(text)
        self.query = cypher.unwind(f"{_BINDINGS} {self.text}", _ROW)

    def outcome(self, event: Event) -> Outcome:
        # The template's writes are unknown; messages with the same Kafka key (one entity,
        # in the usual keyed topic) are kept in separate queries (see cypher.combine).
        entities = () if event.key is None else (cypher.identity("key", event.key),)
        return Accepted([cypher.one(self.query, event.row(), entities)])


def check(text: str) -> str:
    """The template, stripped of blanks and a final semicolon; ``BadTemplate`` if it cannot
    be one (empty, too long, more than one statement)."""
    stripped = text.strip().rstrip(";").strip()
    if not stripped:
        raise BadTemplate("the Cypher template is empty")
    if len(stripped) > MAX_TEMPLATE:
        raise BadTemplate(f"the Cypher template is longer than {MAX_TEMPLATE} characters")
    if "\x00" in stripped:
        raise BadTemplate("the Cypher template contains a NUL character")
    return stripped
