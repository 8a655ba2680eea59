"""The Kafka stream clauses of Cypher, as the proxy answers them (legacy Memgraph syntax).

Use, for every RUN::

    if looks_like_stream_clause(query):      # one anchored regex; ordinary queries fail fast
        clause = parse_stream_clause(query)  # a dataclass below, or StreamSyntaxError
        ...                                  # run it; never forward it to the backend
    else:
        ...                                  # forward the query

The clauses (stream.lark; reference/memgraph_streams.md §1.1 and the manual; ``ON ERROR`` and
``DELIVERY`` are boltstream's own)::

    CREATE STREAM name AS LOAD DATA KAFKA 'uri' WITH TOPIC 'topic'
        [WITH TRANSFORM 'uri']                      -- a transform, or a mapping:
        [WITH CYPHER 'template'] [WITH PATTERN 'pattern']...
        [WITH FORMAT CUD | JSON | TEXT | BYTES]
        [MERGE NODE PROPERTIES] [MERGE RELATIONSHIP PROPERTIES]
        [BATCH_INTERVAL ms] [BATCH_SIZE count]      -- BATCH INTERVAL / BATCH SIZE too
        [ON ERROR STOP | ON ERROR SKIP | ON ERROR DEAD LETTER 'topic']
        [DELIVERY AT LEAST ONCE | DELIVERY EXACTLY ONCE]
                                                    -- the options in any order, each once
                                                    -- (WITH PATTERN repeats, in order)
    DROP STREAM name
    SHOW STREAMS
    START STREAM name [LIMIT count BATCHES]
    STOP STREAM name
    START ALL STREAMS
    STOP ALL STREAMS
    TEST STREAM name [LIMIT count BATCHES]

and Memgraph 2.x's (reference/memgraph_streams.md §2)::

    CREATE KAFKA STREAM name TOPICS t1[, t2...] TRANSFORM module.procedure
        [CONSUMER_GROUP g] [BATCH_INTERVAL ms] [BATCH_SIZE n] [BOOTSTRAP_SERVERS 'h:p,...']
        [CONFIGS {'k': 'v', ...}] [CREDENTIALS {'k': 'v', ...}]
                                                    -- any order; 2.0's CREATE STREAM name
                                                    -- TOPICS ... too; TRANSFORM 'uri' too;
                                                    -- the legacy clause's mapping options
                                                    -- instead of TRANSFORM, ON ERROR,
                                                    -- DELIVERY and DATABASE too
    CHECK STREAM name [BATCH_LIMIT n] [TIMEOUT ms]
    START STREAM name BATCH_LIMIT n [TIMEOUT ms]
    CREATE PULSAR STREAM ...                        -- recognised, and refused

The legacy CREATE STREAM takes CONSUMER_GROUP, CONFIGS and CREDENTIALS too, and several
topics (``WITH TOPIC 'a,b'`` or ``WITH TOPIC`` repeated).
Operating streams (boltstream's own; README "Operating streams")::

    CREATE STREAM ... [DATABASE name]              -- where it writes (default: the session's)
    SHOW STREAM name OFFSETS
    ALTER STREAM name SET OFFSET TO {BEGINNING | END | offset | TIMESTAMP ms} [FOR PARTITION p]
    ALTER STREAM name SKIP FAILED MESSAGE
    ALTER STREAM name SET [BATCH_INTERVAL ms] [BATCH_SIZE n] [ON ERROR ...]
        [TRANSFORM 'uri' | TRANSFORM module.procedure] [WITH CYPHER ...] [WITH PATTERN ...]...
        [WITH FORMAT ...] [MERGE ... PROPERTIES] [CONFIGS {...}] [CREDENTIALS {...}]

Keywords are case-insensitive; whitespace, ``//`` and ``/* */`` comments go between any two
tokens; one trailing ``;`` is allowed. A name is an identifier or a backquoted name (a backtick
inside is doubled); strings take single or double quotes and Cypher's backslash escapes; counts
are positive and fit a signed 64-bit integer.

``KEYWORDS`` are the first words of these clauses, for the router's keyword index.
"""

from __future__ import annotations

from grammar.clauses import (
    AlterStream,
    AlterStreamOffset,
    AlterStreamSkip,
    CheckStream,
    CreateKafkaStream,
    CreateStream,
    Delivery,
    DropStream,
    MappingClauseOptions,
    OnError,
    ShowStreamOffsets,
    ShowStreams,
    StartAllStreams,
    StartStream,
    StopAllStreams,
    StopStream,
    StreamClause,
    TestStream,
    UnsupportedStreamClause,
    ValueFormat,
)
from grammar.errors import StreamSyntaxError
from grammar.parser import parse_stream_clause
from grammar.prefilter import looks_like_stream_clause

KEYWORDS: tuple[str, ...] = ("CREATE", "DROP", "SHOW", "START", "STOP", "TEST", "CHECK", "ALTER")

__all__ = [
    "KEYWORDS",
    "AlterStream",
    "AlterStreamOffset",
    "AlterStreamSkip",
    "CheckStream",
    "CreateKafkaStream",
    "CreateStream",
    "Delivery",
    "DropStream",
    "MappingClauseOptions",
    "OnError",
    "ShowStreamOffsets",
    "ShowStreams",
    "StartAllStreams",
    "StartStream",
    "StopAllStreams",
    "StopStream",
    "StreamClause",
    "StreamSyntaxError",
    "TestStream",
    "UnsupportedStreamClause",
    "ValueFormat",
    "looks_like_stream_clause",
    "parse_stream_clause",
]
