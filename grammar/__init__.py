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

Operating streams (boltstream's own; README "Operating streams")::

    CREATE STREAM ... [DATABASE name]              -- where it writes (default: the session's)
    SHOW STREAM name OFFSETS
    ALTER STREAM name SET OFFSET TO {BEGINNING | END | offset | TIMESTAMP ms} [FOR PARTITION p]
    ALTER STREAM name SKIP FAILED MESSAGE
    ALTER STREAM name SET [BATCH_INTERVAL ms] [BATCH_SIZE n] [ON ERROR ...] [TRANSFORM 'uri']

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
    CreateStream,
    Delivery,
    DropStream,
    OnError,
    ShowStreamOffsets,
    ShowStreams,
    StartAllStreams,
    StartStream,
    StopAllStreams,
    StopStream,
    StreamClause,
    TestStream,
    ValueFormat,
)
from grammar.errors import StreamSyntaxError
from grammar.parser import parse_stream_clause
from grammar.prefilter import looks_like_stream_clause

KEYWORDS: tuple[str, ...] = ("CREATE", "DROP", "SHOW", "START", "STOP", "TEST", "ALTER")

__all__ = [
    "KEYWORDS",
    "AlterStream",
    "AlterStreamOffset",
    "AlterStreamSkip",
    "CreateStream",
    "Delivery",
    "DropStream",
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
    "ValueFormat",
    "looks_like_stream_clause",
    "parse_stream_clause",
]
