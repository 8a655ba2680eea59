"""What message metadata costs a transform: the same work in the three styles, in real workers.

    .venv/bin/python bench/transform_styles.py [--messages 200000] [--batch-size 1000]

Transforms ``--messages`` small JSON messages (keys, one header, a timestamp) in batches of
``--batch-size``, through ``TransformRunner.run_many`` (what a stream that is behind does), with:

1. **values**: a legacy ``stream(batch)`` that gets the values only;
2. **stream_messages**: a legacy script that gets each message with its metadata;
3. **module**: a Memgraph transformation module (``@mgp.transformation``, the ``mgp`` shim).

Each writes one query per message with the same parameters (read from the JSON value, plus
the offset where the style offers it). Prints messages per second for each, best of
``--repeat`` runs. No broker, no database: the transform and its transport only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.streams.transform import TransformRunner, TransformSource  # noqa: E402

VALUES = """\
import json

def stream(batch):
    return [("CREATE (:Item {id: $id, name: $name})", json.loads(item)) for item in batch]
"""
MESSAGES = """\
import json

def stream_messages(messages):
    out = []
    for m in messages:
        row = json.loads(m.value)
        row["offset"] = m.offset
        out.append(("CREATE (:Item {id: $id, name: $name, offset: $offset})", row))
    return out
"""
MODULE = """\
import json
import mgp


@mgp.transformation
def items(messages: mgp.Messages
          ) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
    out = []
    for i in range(messages.total_messages()):
        m = messages.message_at(i)
        row = json.loads(m.payload())
        row["offset"] = m.offset()
        out.append(mgp.Record(query="CREATE (:Item {id: $id, name: $name, offset: $offset})",
                              parameters=row))
    return out
"""


class Message:
    """What confluent-kafka's Message offers the transform runner."""

    __slots__ = ("_offset", "_value")

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"key-%d" % (self._offset % 1000)

    def topic(self) -> str:
        return "items"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000 + self._offset)

    def headers(self) -> list[tuple[str, bytes]]:
        return [("source", b"bench")]


async def measure(
    code: str, transformation: str | None, batches: list[list[Any]], repeat: int
) -> float:
    source = TransformSource.from_code("/bench/items.py", code)
    best = float("inf")
    async with TransformRunner(
        source, name="bench", transformation=transformation, batch_timeout=120
    ) as runner:
        inputs = batches if runner.metadata else [[m.value() for m in b] for b in batches]
        for _ in range(repeat):
            started = time.perf_counter()
            results = await runner.run_many(inputs)
            best = min(best, time.perf_counter() - started)
            assert all(isinstance(r, list) for r in results), results[-1]
    return sum(len(b) for b in batches) / best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    messages = [
        Message(json.dumps({"id": i, "name": f"item {i}"}).encode(), i)
        for i in range(args.messages)
    ]
    batches = [messages[i : i + args.batch_size] for i in range(0, len(messages), args.batch_size)]
    print(f"{args.messages} messages, batches of {args.batch_size}, best of {args.repeat}")
    for label, code, transformation in (
        ("values (stream)", VALUES, None),
        ("metadata (stream_messages)", MESSAGES, None),
        ("Memgraph module (mgp)", MODULE, "items.items"),
    ):
        rate = await measure(code, transformation, batches, args.repeat)
        print(f"  {label:30} {rate:>12,.0f} messages/s")


if __name__ == "__main__":
    asyncio.run(main())
