from __future__ import annotations

import pytest

from bolt.versions import (
    SUPPORTED_VERSIONS,
    Version,
    has_element_ids,
    has_logon,
    has_route_message,
    has_telemetry,
    route_has_extra,
    uses_gql_failure,
)


def test_str_and_parse() -> None:
    assert str(Version(5, 8)) == "5.8"
    assert Version.parse("5.8") == Version(5, 8)
    assert Version.parse(" 4.4 ") == Version(4, 4)
    assert Version.parse("5") == Version(5, 0)


@pytest.mark.parametrize("text", ["", "x", "5.x", "5.8.1", "256.0", "-1.0"])
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        Version.parse(text)


def test_ordering_is_numeric() -> None:
    assert Version(4, 10) > Version(4, 4)
    assert Version(5, 0) > Version(4, 4)
    assert sorted([Version(5, 1), Version(4, 4), Version(5, 0)]) == [
        Version(4, 4),
        Version(5, 0),
        Version(5, 1),
    ]


def test_supported_versions() -> None:
    assert [str(v) for v in SUPPORTED_VERSIONS] == [
        "5.8", "5.7", "5.6", "5.4", "5.3", "5.2", "5.1", "5.0", "4.4", "4.3", "4.2", "4.1",
    ]  # fmt: skip
    assert list(SUPPORTED_VERSIONS) == sorted(SUPPORTED_VERSIONS, reverse=True)
    assert Version(5, 5) not in SUPPORTED_VERSIONS


@pytest.mark.parametrize(
    ("predicate", "first"),
    [
        (has_logon, Version(5, 1)),
        (uses_gql_failure, Version(5, 7)),
        (has_element_ids, Version(5, 0)),
        (has_route_message, Version(4, 3)),
        (route_has_extra, Version(4, 4)),
        (has_telemetry, Version(5, 4)),
    ],
)
def test_feature_predicates_switch_at_their_version(predicate: object, first: Version) -> None:
    assert callable(predicate)
    for v in SUPPORTED_VERSIONS:
        assert predicate(v) is (v >= first), v
