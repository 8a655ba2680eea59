"""What the built-in transforms share: reading a message as strict JSON, checking parameter
values, and the one-item-per-message loop with dead-letter items.

The transform worker gets the text of one file, so ``Builtin.source()`` pins this file's code
followed by the transform's own, leaving out the transform's imports of this module (the lines
marked ``# pinned: inlined``) and its second ``from __future__`` line. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

DEAD_LETTER = "// boltstream: dead letter"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 90  # nesting inside a parameter (the worker's output check allows 100)


class Invalid(Exception):
    """Why a message is rejected (the text goes to the dead-letter record)."""


def per_message(
    batch: list[bytes], one: Callable[[bytes], tuple[str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any]]]:
    """One item per message, in order: ``one(message)``, or its dead-letter item."""
    result: list[tuple[str, dict[str, Any]]] = []
    for index, raw in enumerate(batch):
        try:
            result.append(one(raw))
        except Invalid as exc:
            result.append((DEAD_LETTER, {"index": index, "reason": str(exc)}))
    return result


def bad_text(text: str) -> bool:
    """True for a string that cannot be UTF-8 (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def value_problem(value: Any, where: str, depth: int) -> str | None:
    """What makes a JSON value unusable as a query parameter, or None."""
    if depth > MAX_DEPTH:
        return f"{where} is nested too deeply"
    if isinstance(value, str):
        return f"{where} is not valid Unicode" if bad_text(value) else None
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"{where} is outside 64-bit integers"
    if isinstance(value, list):
        for position, item in enumerate(value):
            problem = value_problem(item, f"{where}[{position}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for name, item in value.items():
            if bad_text(name):
                return f"{where} has a key that is not valid Unicode"
            problem = value_problem(item, f"{where}.{name}", depth + 1)
            if problem:
                return problem
        return None
    return f"{where} has an unsupported type"  # pragma: no cover - json gives no other type


def load(raw: bytes, noun: str = "message", show: Callable[[Any], str] = json.dumps) -> Any:
    """The JSON value of ``raw``, strictly (UTF-8, no duplicate keys, no NaN), or ``Invalid``
    whose reason calls it ``the <noun>``."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for key, item in pairs:
            if key in value:
                raise Invalid(f"the {noun} has the key {show(key)} twice")
            value[key] = item
        return value

    def no_constant(word: str) -> Any:
        raise Invalid(f"the {noun} is not standard JSON ({word})")

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"the {noun} is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except RecursionError:
        raise Invalid(f"the {noun} is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer with too many digits
        if not text.strip():
            raise Invalid(f"the {noun} is empty") from None
        raise Invalid(f"the {noun} is not JSON: {exc}") from None
