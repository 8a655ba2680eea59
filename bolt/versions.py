"""Bolt protocol versions and the per-version feature switches the rest of ``bolt`` asks about.

A version is a (major, minor) pair. Everything version-dependent in this package asks one of the
small predicates below instead of comparing numbers inline, so the version history lives in one
place (bolt.md §5.3).

Spec: Bolt "Handshake" and "Bolt version 5" appendix (docs-bolt).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class Version:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, s: str) -> Version:
        """Parse ``"5.8"`` (or ``"5"``, meaning 5.0). Raises ``ValueError`` on anything else."""
        major, _, minor = s.strip().partition(".")
        try:
            version = cls(int(major), int(minor) if minor else 0)
        except ValueError:
            raise ValueError(f"not a Bolt version: {s!r}") from None
        if not (0 <= version.major <= 255 and 0 <= version.minor <= 255):
            raise ValueError(f"not a Bolt version: {s!r}")
        return version


# The spec calls 5.5 a flawed design that no server negotiates; drivers still offer it inside
# their ranges, so every place that picks a version must skip it.
NEVER_NEGOTIATE: frozenset[Version] = frozenset({Version(5, 5)})

# Descending, because handshake replies and manifests list the best version first.
SUPPORTED_VERSIONS: tuple[Version, ...] = (
    Version(5, 8),
    Version(5, 7),
    Version(5, 6),
    Version(5, 4),
    Version(5, 3),
    Version(5, 2),
    Version(5, 1),
    Version(5, 0),
    Version(4, 4),
    Version(4, 3),
    Version(4, 2),
    Version(4, 1),
)

_V4_3 = Version(4, 3)
_V4_4 = Version(4, 4)
_V5_0 = Version(5, 0)
_V5_1 = Version(5, 1)
_V5_4 = Version(5, 4)
_V5_7 = Version(5, 7)


def has_logon(v: Version) -> bool:
    """5.1+: credentials move from HELLO to LOGON, and there is an AUTHENTICATION state."""
    return v >= _V5_1


def uses_gql_failure(v: Version) -> bool:
    """5.7+: FAILURE carries ``neo4j_code``/``gql_status``/``description`` instead of ``code``."""
    return v >= _V5_7


def has_element_ids(v: Version) -> bool:
    """5.0+: graph structures carry element ids and DateTime uses UTC seconds ('I'/'i')."""
    return v >= _V5_0


def has_route_message(v: Version) -> bool:
    """4.3+: the ROUTE message exists."""
    return v >= _V4_3


def route_has_extra(v: Version) -> bool:
    """4.4+: ROUTE's third field is ``extra{db, imp_user}`` instead of a plain db name."""
    return v >= _V4_4


def has_telemetry(v: Version) -> bool:
    """5.4+: the TELEMETRY message exists."""
    return v >= _V5_4
