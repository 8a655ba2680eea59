"""Streams without Python: Cypher templates, patterns and CUD messages.

Users of the Neo4j Connector for Kafka describe how messages become graph writes instead of
writing transform code (shared/reference/neo4j_kafka.md sections 1.3, 1.4, 1.6, 2.2). This
package is that mapping, pure and without I/O:

* ``events``: a Kafka message as the strategies see it (``Event``: value decoded by the
  stream's format, key, headers, timestamp, topic, partition, offset), and why a message
  cannot be read (``BadMessage``).
* ``cypher``: quoting of names that cannot be parameters (labels, relationship types,
  property keys), checked so that no message can inject Cypher; property values a graph can
  store; and ``combine``, which turns the per-message queries of a run of messages into one
  ``UNWIND`` query per batch.
* ``template``: ``WITH CYPHER '...'``: the user's Cypher, run once per batch over
  ``UNWIND $events``, with the connector's bindings (``event``, ``__value``, ``__key``,
  ``__header``, ``__timestamp``, and ``__topic``, ``__partition``, ``__offset``).
* ``pattern``: ``WITH PATTERN '(:Person{!id, name})'``, node and relationship patterns,
  several per stream, tombstones deleting what the key names.
* ``cud``: ``WITH FORMAT CUD``: the connector's create/update/merge/delete documents,
  validated strictly.
* ``mapper``: CREATE STREAM's mapping options checked into a ``MappingSpec`` (the stream's
  definition), and ``Mapper``, which a running stream (``runner.py``, its transform stage)
  and TEST STREAM use to map each batch.

Every strategy maps one message to an ``Outcome`` (``proxy.streams.outcomes``): its queries,
or ``Rejected`` with the reason, so a bad message goes to the stream's error policy alone and
the rest of its batch is applied. The queries of one message are ``(text, {EVENTS: [row]})``
pairs; ``cypher.combine`` concatenates the rows of consecutive equal texts, which is how a
batch becomes one ``UNWIND`` per run of messages with the same shape.
"""

from proxy.streams.mapping.cypher import EVENTS, combine
from proxy.streams.mapping.events import BadMessage, Event, ValueFormat, decode

__all__ = ["EVENTS", "BadMessage", "Event", "ValueFormat", "combine", "decode"]
