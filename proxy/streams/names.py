"""What a clause may hand to the native Kafka client: stream names, topic names, settings.

librdkafka is C. A string it is given ends at its first NUL byte, and some values it cannot
use make confluent-kafka abort the whole process instead of raising: a consumer whose
``group.id`` is empty *as C reads it* (``""``, ``"\\0"``, ``"\\t"``) dies on an assertion in
``Consumer_init`` (SIGABRT). A stream's name becomes its consumer group id, so one clause
could kill the proxy, and, the stream being recorded as running, kill it again at every
restart (Memgraph's streams had the same class of bug, memgraph#1167).

So every value is checked here before any Kafka client is built from it: stream names when a
stream is created (``check_stream_name``), topics by Kafka's own rules (``check_topic``), and a
whole client configuration right before the client is constructed (``check_client_config``),
which also covers what older catalogs recorded and per-stream settings.

A stream's own settings (CONFIGS, CREDENTIALS) come from any user allowed to create a stream,
so a few librdkafka settings are the proxy operator's alone (``check_stream_setting``): those
that load a shared library into the proxy's process or run a command (code run as the proxy's
user, with its access to the graph and every stream's secrets), the one that changes the
whole process's signal handling, and confluent-kafka's Python callbacks, which a clause
cannot give. ``stream_settings`` drops them from what an older catalog recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_STREAM_NAME = 128  # characters; the name reaches group ids, client ids and log lines
# Letters and digits of any script, underscore, dot and dash; starting with a letter, digit or
# underscore (never a dash: it would read as an option in command lines and tools).
_STREAM_NAME = re.compile(r"[^\W][\w.-]*\Z")
# Kafka's own rule (kafka.common.internals.Topic): ASCII letters, digits, '.', '_', '-';
# 1 to 249 characters; not "." or "..".
MAX_TOPIC_NAME = 249
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# librdkafka settings a stream may not set, with why (the operator may, in
# --kafka-client-config). librdkafka's CONFIGURATION.md: plugin.library.paths is dlopen()ed;
# ssl.engine.location is an OpenSSL engine (a shared library); ssl.providers are OpenSSL 3
# provider modules; sasl.kerberos.kinit.cmd runs through the shell; internal.termination.signal
# installs a handler for that signal in the whole process and sends it to librdkafka's threads
# when a client closes (9 kills the proxy at once; 15 replaces its own SIGTERM handler).
OPERATOR_SETTINGS = {
    "internal.termination.signal": "librdkafka would take over that signal in the whole proxy",
    "plugin.library.paths": "it loads shared libraries into the proxy",
    "ssl.engine.location": "it loads an OpenSSL engine (a shared library) into the proxy",
    "ssl.providers": "it loads OpenSSL providers (shared libraries) into the proxy",
    "sasl.kerberos.kinit.cmd": "it is a shell command the proxy would run",
}
# confluent-kafka's Python callbacks: a clause can only give text.
CALLBACK_SETTINGS = frozenset(
    {"error_cb", "stats_cb", "throttle_cb", "oauth_cb", "logger", "on_commit", "on_delivery"}
)


class UnsafeValue(ValueError):
    """A value the Kafka client must not be given; the message says which and why."""


def check_stream_name(name: str) -> None:
    """Raise ``UnsafeValue`` unless ``name`` is a valid stream name (see the module doc)."""
    if not name:
        raise UnsafeValue("a stream name cannot be empty")
    if len(name) > MAX_STREAM_NAME:
        raise UnsafeValue(
            f"a stream name may have at most {MAX_STREAM_NAME} characters "
            f"(this one has {len(name)})"
        )
    if not _STREAM_NAME.match(name):
        raise UnsafeValue(
            f"{shown(name)} is not a valid stream name: use letters, digits, "
            "'_', '.' and '-', starting with a letter, a digit or '_'"
        )


def check_topic(topic: str, what: str = "topic") -> None:
    """Raise ``UnsafeValue`` unless ``topic`` is a valid Kafka topic name."""
    if (
        not topic
        or len(topic) > MAX_TOPIC_NAME
        or topic in (".", "..")
        or not _TOPIC_NAME.match(topic)
    ):
        raise UnsafeValue(
            f"{shown(topic)} is an invalid {what} name: Kafka allows 1 to "
            f"{MAX_TOPIC_NAME} ASCII letters, digits, '.', '_' and '-' "
            "(not '.' or '..')"
        )


def check_client_config(config: Mapping[str, Any]) -> None:
    """Raise ``UnsafeValue`` if a librdkafka configuration could crash or silently mislead the
    native client: a key or string value with a control character (a NUL cuts the string
    short), or, for a consumer, a ``group.id`` with nothing in it."""
    for key, value in config.items():
        if _CONTROL.search(key):
            raise UnsafeValue(f"Kafka setting {shown(key)} contains a control character")
        if isinstance(value, str) and _CONTROL.search(value):
            raise UnsafeValue(f"Kafka setting {key} contains a control character")
    group = config.get("group.id")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise UnsafeValue(f"Kafka consumer group id {shown(str(group))} is empty")


def check_stream_setting(key: str) -> None:
    """Raise ``UnsafeValue`` if a stream's own CONFIGS / CREDENTIALS may not set ``key``."""
    why = OPERATOR_SETTINGS.get(key.strip().lower())
    if why is not None:
        raise UnsafeValue(
            f"Kafka setting {key} is not allowed per stream: {why} "
            "(only the proxy's own --kafka-client-config may set it)"
        )
    if key in CALLBACK_SETTINGS:
        raise UnsafeValue(f"Kafka setting {key} is a Python callback, not a setting")


def stream_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A stream's own settings without those ``check_stream_setting`` refuses (an older catalog
    may hold them: they never reach a client)."""
    allowed = {}
    for key, value in settings.items():
        try:
            check_stream_setting(key)
        except UnsafeValue:
            continue
        allowed[key] = value
    return allowed


def shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message or a log line: control characters escaped, cut short."""
    escaped = text.encode("unicode_escape").decode("ascii") if _CONTROL.search(text) else text
    if len(escaped) > limit:
        escaped = escaped[: limit - 3] + "..."
    return f"'{escaped}'"
