"""A stream's mapping, as CREATE STREAM gives it and as a run applies it.

* ``build_spec``: the clause's mapping options -> a checked ``MappingSpec`` (what the stream's
  definition stores), or ``BadMapping`` saying what is wrong: neither a transform nor a
  mapping, both, options that do not go together, a pattern that does not parse, a template
  that cannot be one (``check_template``: lexically, since the proxy has no Cypher parser).
* ``Mapper``: a spec made ready to run (templates wrapped, patterns parsed and their queries
  built, CUD in the backend's dialect). ``outcomes(messages)`` decodes and maps each Kafka
  message of a batch: its queries, or ``Rejected`` with the reason (a value that does not
  read, a missing key, an invalid CUD document), so a bad message goes to the stream's error
  policy alone. ``prepare(queries)`` joins the per-message queries of a run of messages into
  as few ``UNWIND`` queries as keep the result the same (``cypher.combine``).

Runs in the proxy's event loop (no worker): mapping a message is a dictionary walk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grammar import lexer
from grammar.pattern import PatternError, parse_pattern
from proxy.streams.definition import MappingSpec, ValueFormat
from proxy.streams.mapping import cypher
from proxy.streams.mapping.cud import BOLT, CudMapper, Dialect
from proxy.streams.mapping.events import BadMessage, RawMessage, decode
from proxy.streams.mapping.events import ValueFormat as EventFormat
from proxy.streams.mapping.pattern import PatternMapper, PatternOptions
from proxy.streams.mapping.template import BadTemplate, Template, check, unreadable
from proxy.streams.outcomes import DEAD_LETTER_QUERY, Accepted, Outcome, Query, Rejected, shorten

MAPPING_OPTIONS = "WITH CYPHER 'template', WITH PATTERN 'pattern' or WITH FORMAT CUD"
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


class BadMapping(ValueError):
    """Mapping options that cannot make a stream; the message says why."""


@dataclass(frozen=True)
class MappingOptions:
    """A clause's mapping options as given (``grammar.MappingClauseOptions``)."""

    template: str | None = None  # WITH CYPHER
    patterns: tuple[str, ...] = ()  # WITH PATTERN, in order
    value_format: str | None = None  # WITH FORMAT: cud, json, text or bytes
    merge_node_properties: bool = False
    merge_relationship_properties: bool = False

    @property
    def chosen(self) -> bool:
        """Whether the options choose a mapping (a template, patterns or CUD)."""
        return self.template is not None or bool(self.patterns) or self.value_format == "cud"

    @property
    def given(self) -> bool:
        """Whether any option is given."""
        return self != MappingOptions()

    @classmethod
    def of_spec(cls, spec: MappingSpec) -> MappingOptions:
        """The options that build ``spec`` again (``build_spec``)."""
        return cls(
            template=spec.template,
            patterns=spec.patterns,
            value_format="cud" if spec.kind == "cud" else spec.value_format,
            merge_node_properties=spec.merge_node_properties,
            merge_relationship_properties=spec.merge_relationship_properties,
        )


def build_spec(
    transform: str | None, options: MappingOptions, dialect: Dialect = BOLT
) -> MappingSpec | None:
    """The stream's mapping (None for a transform stream), checked; ``BadMapping`` else."""
    template, patterns, value_format = options.template, options.patterns, options.value_format
    merge_node_properties = options.merge_node_properties
    merge_relationship_properties = options.merge_relationship_properties
    cud = value_format == "cud"
    given = [
        what
        for what, present in (
            ("WITH CYPHER", template is not None),
            ("WITH PATTERN", bool(patterns)),
            ("WITH FORMAT CUD", cud),
        )
        if present
    ]
    merges = [
        what
        for what, present in (
            ("MERGE NODE PROPERTIES", merge_node_properties),
            ("MERGE RELATIONSHIP PROPERTIES", merge_relationship_properties),
        )
        if present
    ]
    if transform is not None:
        extra = given + merges + ([f"WITH FORMAT {value_format.upper()}"] if value_format else [])
        if extra:
            raise BadMapping(
                f"a stream has either a transform or a mapping, not both: {extra[0]} does "
                "not go with WITH TRANSFORM (a transform reads the messages as they are)"
            )
        return None
    if not given:
        raise BadMapping(f"a stream needs WITH TRANSFORM 'uri' or a mapping: {MAPPING_OPTIONS}")
    if len(given) > 1:
        raise BadMapping(f"{given[0]} and {given[1]} do not go together: give one of them")
    if merges and not patterns:
        raise BadMapping(f"{merges[0]} applies to WITH PATTERN only")
    fmt: ValueFormat = "json"
    if value_format in ("text", "bytes"):
        if patterns:
            raise BadMapping(
                f"a pattern reads the fields of JSON values: WITH FORMAT "
                f"{value_format.upper()} does not go with WITH PATTERN"
            )
        fmt = "text" if value_format == "text" else "bytes"
    if template is not None:
        spec = MappingSpec("cypher", template=check_template(template), value_format=fmt)
    elif patterns:
        spec = MappingSpec(
            "pattern",
            patterns=tuple(patterns),
            merge_node_properties=merge_node_properties,
            merge_relationship_properties=merge_relationship_properties,
        )
    else:
        spec = MappingSpec("cud")
    Mapper(spec, dialect)  # every pattern parses and its names can be quoted
    return spec


def check_template(text: str) -> str:
    """The template as it will run (blanks and a final ``;`` stripped), checked as far as a
    lexer can: one statement, strings, names and comments closed, brackets balanced, no
    ``$parameter`` (the message is ``event``). ``BadMapping`` says what and where."""
    try:
        text = check(text)
    except BadTemplate as exc:
        raise BadMapping(str(exc)) from None
    opened: list[tuple[str, int]] = []
    for token in lexer.tokens(text):
        kind, value, at = token.lastgroup, token.group(), token.start()
        if kind == "param":
            raise BadMapping(
                f"the Cypher template uses the parameter {value[:40]} (column {at + 1}): a "
                "template has no parameters; it reads each message as event (and __key, "
                "__header, __timestamp, __topic, __partition, __offset)"
            )
        if kind != "other":
            continue
        if value in "'\"`":
            raise BadMapping(
                f"the Cypher template has an unterminated quote {value} at column {at + 1}"
            )
        if value == "/" and text.startswith("/*", at):
            raise BadMapping(f"the Cypher template has an unterminated comment at column {at + 1}")
        if value == ";":
            raise BadMapping(
                f"the Cypher template has more than one statement (';' at column {at + 1})"
            )
        if value in _CLOSERS:
            opened.append((value, at))
        elif value in _CLOSERS.values():
            if not opened or _CLOSERS[opened[-1][0]] != value:
                raise BadMapping(
                    f"the Cypher template has an unmatched '{value}' at column {at + 1}"
                )
            opened.pop()
    if opened:
        value, at = opened[-1]
        raise BadMapping(f"the Cypher template does not close the '{value}' at column {at + 1}")
    return text


class Mapper:
    """A ``MappingSpec`` ready to run; see the module docstring."""

    def __init__(self, spec: MappingSpec, dialect: Dialect = BOLT) -> None:
        self.spec = spec
        self.format = EventFormat(spec.value_format)
        self._strategy: Template | PatternMapper | CudMapper
        if spec.kind == "cypher":
            try:
                self._strategy = Template(spec.template or "")
            except BadTemplate as exc:
                raise BadMapping(str(exc)) from None
        elif spec.kind == "pattern":
            parsed = []
            for number, text in enumerate(spec.patterns, 1):
                try:
                    parsed.append(parse_pattern(text))
                except PatternError as exc:
                    which = f"pattern {number}" if len(spec.patterns) > 1 else "the pattern"
                    raise BadMapping(f"{which} {shorten(text, 80)!r} is invalid: {exc}") from None
            options = PatternOptions(spec.merge_node_properties, spec.merge_relationship_properties)
            try:
                self._strategy = PatternMapper(parsed, options)
            except cypher.BadName as exc:
                raise BadMapping(f"the pattern cannot be used: {exc}") from None
        else:
            self._strategy = CudMapper(dialect)

    @property
    def template_query(self) -> str | None:
        """The batch query of a template stream (its rows in ``$__boltstream_events``)."""
        return self._strategy.query if isinstance(self._strategy, Template) else None

    def outcome(self, message: RawMessage) -> Outcome:
        """One message's queries, or why it is rejected."""
        strategy = self._strategy
        if isinstance(strategy, Template) and strategy.reads_value_only:
            return strategy.value_outcomes([message], self.format)[0]
        try:
            event = decode(message, self.format)
        except BadMessage as exc:
            return unreadable(exc)
        try:
            outcome = self._strategy.outcome(event)
        except (BadMessage, cypher.BadName) as exc:  # strategies return these; in case
            return Rejected(shorten(str(exc)))
        if isinstance(outcome, Rejected):
            return Rejected(shorten(outcome.reason))
        return outcome

    def outcomes(self, messages: Sequence[RawMessage]) -> list[Outcome]:
        strategy = self._strategy
        if isinstance(strategy, Template) and strategy.reads_value_only:
            return strategy.value_outcomes(messages, self.format)  # the hot path, one loop
        return [self.outcome(message) for message in messages]

    @staticmethod
    def prepare(queries: Sequence[Query]) -> list[Query]:
        """The queries to send for a run of messages (see ``cypher.combine``)."""
        return cypher.combine(queries)

    def test_rows(self, messages: Sequence[RawMessage]) -> list[tuple[str, dict[str, Any]]]:
        """What TEST STREAM shows for a batch: the queries that would run, and a dead-letter
        item (as a transform's) for each rejected message, in the batch's order."""
        rows: list[Query] = []
        run: list[Query] = []
        for index, outcome in enumerate(self.outcomes(messages)):
            if isinstance(outcome, Accepted):
                run += outcome.queries
                continue
            rows += self.prepare(run)
            run = []
            rows.append((DEAD_LETTER_QUERY, {"index": index, "reason": outcome.reason}))
        return rows + self.prepare(run)
