"""A stream's position in Kafka, seen and moved: ``SHOW STREAM name OFFSETS`` and ``ALTER STREAM
name SET OFFSET TO ...`` / ``SKIP FAILED MESSAGE`` (README "Operating streams").

Kafka Connect's offsets API (KIP-875) is the model: the position of a stopped connector is read
and written as the committed offsets of its consumer group, and the group must have no active
member while it is written (else the member would overwrite it at its next commit, or the
broker refuses the commit). The functions here block (librdkafka); the engine runs them on a
thread. They use a consumer of the stream's group that never subscribes, so it never joins the
group: reading committed offsets and committing new ones is all it does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from proxy.spawn import die_with_parent, spawn_piped
from proxy.streams.kafka import probe_consumer, topic_partitions
from proxy.streams.names import check_client_config
from proxy.streams.positions import TopicPartition

Target = Literal["beginning", "end", "offset", "timestamp"]

log = logging.getLogger("boltstream.streams")


class OffsetError(Exception):
    """The position cannot be moved as asked (the message says why, for the client)."""


class GroupActive(OffsetError):
    """The broker refused the commit because the group has members (generation mismatch)."""


# Kafka error codes of a commit refused because the group has members: ILLEGAL_GENERATION,
# UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS.
_GROUP_ACTIVE = (22, 25, 27)


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition of a stream's topic: the group's committed offset (None: none yet),
    and the low and high watermarks (the first offset still held, and the next to be
    written)."""

    topic: str
    partition: int
    committed: int | None
    low: int
    high: int


@dataclass(frozen=True)
class Member:
    """A member of the stream's consumer group (a proxy running the stream)."""

    member_id: str
    client_id: str
    host: str
    partitions: frozenset[TopicPartition]


def read_offsets(config: Mapping[str, Any], topic: str, timeout: float) -> list[PartitionOffsets]:
    """Every partition of ``topic``: committed offset of the group of ``config`` and
    watermarks. Raises ``TopicMissing``; blocks."""
    with probe_consumer(config) as probe:
        rows = []
        parts = topic_partitions(probe, (topic,), timeout)
        for tp in probe.committed(parts, timeout=timeout):
            low, high = probe.get_watermark_offsets(tp, timeout=timeout)
            committed = tp.offset if tp.offset >= 0 else None
            rows.append(PartitionOffsets(topic, tp.partition, committed, low, high))
        return rows


def resolve(
    config: Mapping[str, Any],
    partitions: list[PartitionOffsets],
    target: Target,
    value: int | None,
    timeout: float,
) -> dict[TopicPartition, int]:
    """Where each of ``partitions`` goes: BEGINNING (the low watermark), END (the high
    watermark), an offset (which must be held: between the watermarks), or the first message
    at or after a timestamp (ms since the epoch; the end if there is none). Blocks."""
    if target == "beginning":
        return {(p.topic, p.partition): p.low for p in partitions}
    if target == "end":
        return {(p.topic, p.partition): p.high for p in partitions}
    assert value is not None
    if target == "offset":
        for p in partitions:
            if not p.low <= value <= p.high:
                raise OffsetError(
                    f"offset {value} is not held by topic {p.topic!r} partition {p.partition} "
                    f"(it holds offsets {p.low} to {p.high - 1}; {p.high} is its end)"
                )
        return {(p.topic, p.partition): value for p in partitions}
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    with probe_consumer(config) as probe:
        found = probe.offsets_for_times(
            [KafkaTopicPartition(p.topic, p.partition, value) for p in partitions],
            timeout=timeout,
        )
    high = {(p.topic, p.partition): p.high for p in partitions}
    return {
        (tp.topic, tp.partition): tp.offset if tp.offset >= 0 else high[(tp.topic, tp.partition)]
        for tp in found
    }


def commit(
    config: Mapping[str, Any], offsets: Mapping[TopicPartition, int], timeout: float
) -> None:
    """Make ``offsets`` the group's committed offsets (synchronously; raises what the broker
    answered). The group must have no active member. Blocks."""
    from confluent_kafka import KafkaException
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    with probe_consumer(config) as probe:
        try:
            answered = probe.commit(
                offsets=[KafkaTopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())],
                asynchronous=False,
            )
        except KafkaException as exc:
            error: Any = exc.args[0] if exc.args else None
            if error is not None and error.code() in _GROUP_ACTIVE:
                raise GroupActive(str(error.str())) from None
            raise
    for tp in answered or []:
        if tp.error is not None:
            raise OffsetError(
                f"the broker refused the offset of topic {tp.topic!r} partition "
                f"{tp.partition}: {tp.error.str()}"
            )


@dataclass(frozen=True)
class Group:
    """A consumer group as the broker describes it. ``active``: it has members now (its
    state is neither Empty nor Dead); ``members`` may be empty even then (Tansu 0.6 lists
    none)."""

    state: str
    members: list[Member]

    @property
    def active(self) -> bool:
        return bool(self.members) or self.state not in ("EMPTY", "DEAD", "UNKNOWN")


def describe(admin: Any, group: str, timeout: float) -> Group | None:
    """The group's state, members and what each is assigned; None when the broker cannot
    tell (it does not answer DescribeGroups). Blocks. Only ever called in a child process
    (``describe_isolated``): see there."""
    try:
        described = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
        description = described.result(timeout + 1)
    except Exception:
        return None
    state = str(getattr(getattr(description, "state", None), "name", "UNKNOWN"))
    found = []
    for member in description.members or []:
        assignment = getattr(member, "assignment", None)
        parts = getattr(assignment, "topic_partitions", None) or []
        found.append(
            Member(
                member_id=str(member.member_id),
                client_id=str(member.client_id),
                host=str(member.host).lstrip("/"),
                partitions=frozenset((tp.topic, tp.partition) for tp in parts),
            )
        )
    return Group(state, found)


# The package root, for the child of ``describe_isolated`` (started with -I: no PYTHONPATH).
_ROOT = str(Path(__file__).resolve().parents[2])
_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from proxy.streams.offsets import _describe_child; _describe_child()"
)


async def describe_isolated(
    config: Mapping[str, Any], group: str, timeout: float, *, python: str = sys.executable
) -> Group | None:
    """``describe`` in a child process of its own, which is None too when that process dies.

    librdkafka 2.x aborts the whole process when a coordinator admin request
    (DescribeGroups, ListConsumerGroupOffsets) fails or times out and its answer comes late
    (``rd_kafka_enq_once_del_source_return: Assertion eonce->refcnt > 0``, librdkafka
    #4605, unfixed in 2.16): in the proxy, SHOW STREAM OFFSETS or SET OFFSET under load
    could take every connection and stream down with it. Here it takes only the child.
    ``config``: the admin client's settings (checked here; strings only, sent on the child's
    stdin, never in its command line, since they may hold credentials). ``python``: the
    interpreter (tests give another program)."""
    settings = {k: v for k, v in config.items() if isinstance(v, str | int | float | bool)}
    check_client_config({k: v for k, v in settings.items() if isinstance(v, str)})
    request = json.dumps({"config": settings, "group": group, "timeout": timeout}).encode()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    try:
        child = await spawn_piped(
            die_with_parent([python, "-I", "-B", "-c", _CHILD, _ROOT]), env=env
        )
    except OSError as exc:
        log.warning("cannot start the consumer group probe: %s", exc)
        return None
    try:
        child.stdin.write(request)
        await child.stdin.drain()
        child.stdin.close()
        out, _ = await asyncio.wait_for(
            asyncio.gather(child.stdout.read(), child.stderr.read()), 2 * timeout + 10
        )
        code = await child.wait()
    except (TimeoutError, OSError, ConnectionError):
        child.kill()
        await child.wait()
        return None
    finally:
        child.kill()
    if code != 0:
        log.warning(
            "the consumer group probe of group %r ended with status %d (the broker's "
            "client failed in it; the proxy goes on)",
            group,
            code,
        )
        return None
    try:
        return _group_from(json.loads(out))
    except (ValueError, TypeError, KeyError):
        return None


def _group_from(document: Any) -> Group | None:
    if document is None:
        return None
    return Group(
        str(document["state"]),
        [
            Member(
                member_id=str(m["member_id"]),
                client_id=str(m["client_id"]),
                host=str(m["host"]),
                partitions=frozenset((str(t), int(p)) for t, p in m["partitions"]),
            )
            for m in document["members"]
        ],
    )


def _describe_child() -> None:
    """The child of ``describe_isolated``: the request on stdin, the group as JSON on stdout."""
    from confluent_kafka.admin import AdminClient

    request = json.loads(sys.stdin.buffer.read())
    config: dict[str, Any] = {**request["config"], "error_cb": lambda error: None}
    admin = AdminClient(config)
    group = describe(admin, str(request["group"]), float(request["timeout"]))
    document = (
        None
        if group is None
        else {
            "state": group.state,
            "members": [
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "host": m.host,
                    "partitions": sorted(m.partitions),
                }
                for m in group.members
            ],
        }
    )
    sys.stdout.write(json.dumps(document))
    sys.stdout.flush()
    os._exit(0)  # not waiting for the client's teardown: the answer is out
