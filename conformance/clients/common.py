"""The shared driver loop of the Python client programs (standard library only: it also runs
in the separate virtualenvs of clients that cannot live in the main one).

A client program reads the scenario (``conformance/scenario.py``) as JSON on stdin, runs each
step with its client's own API and prints one JSON line per step as soon as it is done, so a
client that crashes half-way still reports the steps before the crash.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any


class Client:
    """What a client program implements; the result shapes are in conformance/scenario.py."""

    name = "client"
    version = ""

    def connect(self, step: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def run(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def tx(self, queries: list[str], end: str) -> dict[str, Any]:
        raise NotImplementedError

    def managed(self, queries: list[str]) -> dict[str, Any]:
        return self.tx(queries, "commit")

    def run_autocommit(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        """A query that must run in an auto-commit transaction (a stream clause); ``run``
        already does, except in clients that wrap every query in a transaction."""
        return self.run(query, params)

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        return decode_params(params, STDLIB_TEMPORAL)

    def error(self, exc: BaseException) -> dict[str, Any]:
        return {
            "class": type(exc).__name__,
            "code": getattr(exc, "code", None),
            "message": str(exc),
        }

    def close(self) -> None:
        pass


def result(
    keys: list[str],
    rows: list[list[Any]],
    counters: dict[str, Any] | None = None,
    query_type: str | None = None,
) -> dict[str, Any]:
    return {"keys": list(keys), "rows": rows, "counters": counters, "query_type": query_type}


# -- temporal values ------------------------------------------------------------------------


def fmt_date(year: int, month: int, day: int) -> dict[str, str]:
    return {"$date": f"{year:04d}-{month:02d}-{day:02d}"}


def _clock(hour: int, minute: int, second: int, nanosecond: int) -> str:
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return text + (f".{nanosecond:09d}" if nanosecond else "")


def fmt_local_time(hour: int, minute: int, second: int, nanosecond: int) -> dict[str, str]:
    return {"$localtime": _clock(hour, minute, second, nanosecond)}


def fmt_local_datetime(
    year: int, month: int, day: int, hour: int, minute: int, second: int, nanosecond: int
) -> dict[str, str]:
    date = fmt_date(year, month, day)["$date"]
    return {"$localdatetime": f"{date}T{_clock(hour, minute, second, nanosecond)}"}


def fmt_duration(months: int, days: int, seconds: int, nanoseconds: int) -> dict[str, list[int]]:
    return {"$duration": [months, days, seconds, nanoseconds]}


def normalize_stdlib(value: Any) -> Any:
    """datetime.date/datetime/time/timedelta, or None if ``value`` is none of them."""
    if isinstance(value, datetime.datetime):
        assert value.tzinfo is None, f"unexpected zoned date-time {value!r}"
        return fmt_local_datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond * 1000,
        )
    if isinstance(value, datetime.date):
        return fmt_date(value.year, value.month, value.day)
    if isinstance(value, datetime.time):
        return fmt_local_time(value.hour, value.minute, value.second, value.microsecond * 1000)
    if isinstance(value, datetime.timedelta):
        return fmt_duration(0, value.days, value.seconds, value.microseconds * 1000)
    return None


def _duration_timedelta(parts: list[int]) -> datetime.timedelta:
    months, days, seconds, nanos = parts
    assert months == 0, "a timedelta has no months"
    return datetime.timedelta(days=days, seconds=seconds, microseconds=nanos // 1000)


STDLIB_TEMPORAL: dict[str, Callable[[Any], Any]] = {
    "$date": datetime.date.fromisoformat,
    "$localdatetime": datetime.datetime.fromisoformat,
    "$localtime": datetime.time.fromisoformat,
    "$duration": _duration_timedelta,
}


def decode_params(value: Any, makers: dict[str, Callable[[Any], Any]]) -> Any:
    """Turn the scenario's ``{"$date": ...}`` parameter forms into the client's own types."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key in makers:
                return makers[key](inner)
        return {k: decode_params(v, makers) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_params(v, makers) for v in value]
    return value


# -- the loop --------------------------------------------------------------------------------


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def poll(client: Client, step: dict[str, Any]) -> dict[str, Any]:
    """Run the step's query until its first row is ``[True]`` or its timeout has passed."""
    deadline = time.monotonic() + step["timeout"]
    attempts = 0
    while True:
        found = client.run(step["query"], client.params(step["params"]))
        attempts += 1
        if found["rows"] == [[True]] or time.monotonic() > deadline:
            return {"result": found, "attempts": attempts}
        time.sleep(0.2)


def drive(make_client: Callable[[dict[str, Any]], Client]) -> None:
    scenario = json.load(sys.stdin)
    client = make_client(scenario)
    emit({"client": client.name, "version": client.version})
    try:
        for step in scenario["steps"]:
            try:
                kind = step["kind"]
                if kind == "connect":
                    value = client.connect(step)
                elif kind == "run" and step.get("autocommit"):
                    value = client.run_autocommit(step["query"], client.params(step["params"]))
                elif kind == "run":
                    value = client.run(step["query"], client.params(step["params"]))
                elif kind == "poll":
                    value = poll(client, step)
                elif kind == "tx":
                    value = client.tx(step["queries"], step["end"])
                elif kind == "managed":
                    value = client.managed(step["queries"])
                else:
                    raise ValueError(f"unknown step kind {kind!r}")
                emit({"step": step["name"], "ok": True, "value": value})
            except Exception as exc:
                emit(
                    {
                        "step": step["name"],
                        "ok": False,
                        "error": client.error(exc),
                        "trace": traceback.format_exc(),
                    }
                )
    finally:
        client.close()
    emit({"done": True})
