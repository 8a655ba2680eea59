"""``WITH CYPHER '...'``: the user's Cypher, once per batch, over the batch's messages.

As the Neo4j Connector for Kafka binds them (neo4j_kafka.md section 1.3), each message is
seen by the template as

* ``event`` and ``__value``: the value (decoded by the stream's format; null for a tombstone),
* ``__key``, ``__header`` (a map of header name to text), ``__timestamp`` (milliseconds since
  the epoch: FalkorDB has no zoned date-times; on Neo4j ``datetime({epochMillis:
  __timestamp})`` gives one),
* and, which the connector lacks, ``__topic``, ``__partition``, ``__offset``.

The query run is ``UNWIND $__boltstream_events AS __boltstream_event WITH <bindings> <the
template>`` (only the bindings the template names, and only their fields in the rows): one
row per message, in order, one round trip per batch (runs of messages are
joined by ``cypher.combine``). A message that cannot be decoded is rejected alone. CREATE
checks the template lexically (``mapper.check_template``); beyond that only the backend can
(the proxy does not parse Cypher), so a template that does not run fails its batch, and the
error policy then finds the messages it fails on one at a time. Messages with the same Kafka
key never share one query (FalkorDB's MERGE does not keep row order within a query; see
``cypher``): a keyed topic's updates to one entity apply in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grammar import lexer
from proxy.streams.mapping import cypher
from proxy.streams.mapping.events import (
    BadMessage,
    Event,
    RawMessage,
    ValueFormat,
    decode_key,
    decode_value,
)
from proxy.streams.outcomes import Accepted, Outcome, Rejected, shorten

_NO_ENTITIES: frozenset[str] = frozenset()

MAX_TEMPLATE = 64 * 1024  # characters
_ROW = "__boltstream_event"
# Each binding, and the field of ``Event.row()`` it is.
_FIELD_OF = {
    "event": "value",
    "__value": "value",
    "__key": "key",
    "__header": "header",
    "__timestamp": "timestamp",
    "__topic": "topic",
    "__partition": "partition",
    "__offset": "offset",
}


class BadTemplate(ValueError):
    """A template refused at CREATE; the message says why."""


class Template:
    """A checked template; ``outcome(event)`` is one message's query."""

    def __init__(self, text: str) -> None:
        self.text = check(text)
        # Only the bindings the template names are bound and sent (a word token: names in
        # strings, comments or backquotes do not count; naming one needlessly costs nothing
        # but its bytes). Most templates read ``event`` alone: a row of one field.
        words = {token.group() for token in lexer.tokens(self.text) if token.lastgroup == "word"}
        used = [binding for binding in _FIELD_OF if binding in words]
        self.fields = tuple(dict.fromkeys(_FIELD_OF[binding] for binding in used))
        bindings = ", ".join(f"{_ROW}.{_FIELD_OF[binding]} AS {binding}" for binding in used)
        body = f"WITH {bindings} {self.text}" if bindings else self.text
        self.query = cypher.unwind(body, _ROW)

    def outcome(self, event: Event) -> Outcome:
        # The template's writes are unknown; messages with the same Kafka key (one entity,
        # in the usual keyed topic) are kept in separate queries (see cypher.combine).
        entities = () if event.key is None else (cypher.identity("key", event.key),)
        whole = event.row()
        row: dict[str, Any] = {field: whole[field] for field in self.fields}
        return Accepted([cypher.one(self.query, row, entities)])

    @property
    def reads_value_only(self) -> bool:
        """Whether rows hold the value alone (most templates read ``event`` only)."""
        return self.fields == ("value",)

    def value_outcomes(self, messages: Sequence[RawMessage], fmt: ValueFormat) -> list[Outcome]:
        """``outcome(decode(message, fmt))`` of each message, for a template that reads the
        value only, without decoding what it does not read (the headers, the timestamp, ...),
        a message that does not read rejected alone: the hot path of a template stream, one
        loop, per message only the objects its query is made of."""
        query, events, identity = self.query, cypher.EVENTS, cypher.IDENTITY
        outcomes: list[Outcome] = []
        append = outcomes.append
        for message in messages:
            raw = message.value()
            key = message.key()
            try:
                value = None if raw is None else decode_value(raw, fmt)
                entities = (
                    _NO_ENTITIES
                    if key is None
                    else frozenset((cypher.identity("key", decode_key(key)),))
                )
            except BadMessage as exc:
                append(unreadable(exc))
                continue
            append(Accepted([(query, {events: [{"value": value}], identity: entities})]))
        return outcomes


def unreadable(exc: BadMessage) -> Rejected:
    """The outcome of a message that cannot be read (``decode`` raised ``exc``)."""
    return Rejected(shorten(f"the message cannot be read: {exc}"))


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
