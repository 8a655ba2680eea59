"""The FalkorDB literal renderer's fast paths give the text of the plain rendering."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.backends.falkordb.params import _literal


def plain(value: Any) -> str:
    """The rendering the fast paths must match: every string escaped by hand, every map key
    backquoted, maps and lists joined item by item."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(plain(v) for v in value) + "]"
    return "{" + ",".join(f"`{k}`:{plain(v)}" for k, v in value.items()) + "}"


names = st.text(st.characters(exclude_characters="`\x00"), max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_characters="\x00", codec="utf-8"))
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=20,
)


@given(values)
def test_literal_is_the_plain_rendering(value: Any) -> None:
    assert _literal(value) == plain(value)


def test_rows_sharing_keys_and_percent_signs() -> None:
    rows = [{"a%s": "x%sy", "b": 1}, {"a%s": '"%d\\', "b": None}, {"b": 2, "a%s": ""}]
    assert _literal(rows) == plain(rows)
    assert _literal(rows).startswith('[{`a%s`:"x%sy",`b`:1},')
