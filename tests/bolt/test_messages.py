"""Messages (bolt.md §5): tags, per-version availability, field checks, encoders."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt import values as bv
from bolt.errors import PackStreamError, ProtocolError
from bolt.failures import failure_metadata, normalize_failure
from bolt.messages import (
    IGNORED_PAYLOAD,
    Begin,
    Commit,
    Discard,
    Failure,
    Goodbye,
    Hello,
    Ignored,
    Logoff,
    Logon,
    Pull,
    Record,
    Request,
    Reset,
    Rollback,
    Route,
    Run,
    Success,
    Tag,
    Telemetry,
    decode_request,
    decode_response,
    encode_failure,
    encode_record,
    encode_request,
    encode_response,
    encode_success,
    peek_tag,
    request_defined,
)
from bolt.packstream import Packer, Structure
from bolt.versions import SUPPORTED_VERSIONS, Version

V41, V43, V44, V50, V51, V54, V57, V58 = (
    Version.parse(v) for v in ("4.1", "4.3", "4.4", "5.0", "5.1", "5.4", "5.7", "5.8")
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_tag_values() -> None:
    assert {t.name: t.value for t in Tag} == {
        "HELLO": 0x01, "GOODBYE": 0x02, "RESET": 0x0F, "RUN": 0x10, "BEGIN": 0x11,
        "COMMIT": 0x12, "ROLLBACK": 0x13, "DISCARD": 0x2F, "PULL": 0x3F, "TELEMETRY": 0x54,
        "ROUTE": 0x66, "LOGON": 0x6A, "LOGOFF": 0x6B, "SUCCESS": 0x70, "RECORD": 0x71,
        "IGNORED": 0x7E, "FAILURE": 0x7F,
    }  # fmt: skip


# -- golden payloads from the notes (bolt.md §4.1) ----------------------------------------------


def test_golden_requests() -> None:
    assert encode_request(Run("RETURN 1 AS x", {}, {}), V50) == h(
        "B3 10 8D 52 45 54 55 52 4E 20 31 20 41 53 20 78 A0 A0"
    )
    assert encode_request(Pull(1000), V50) == h("B1 3F A1 81 6E C9 03 E8")
    assert encode_request(Reset(), V50) == h("B0 0F")
    assert encode_request(Goodbye(), V50) == h("B0 02")
    assert decode_request(h("B3 10 8D 52 45 54 55 52 4E 20 31 20 41 53 20 78 A0 A0"), V50) == Run(
        "RETURN 1 AS x", {}, {}
    )
    assert decode_request(h("B1 3F A1 81 6E C9 03 E8"), V50) == Pull(1000, -1)


def test_golden_responses() -> None:
    p = Packer(V50)
    success = encode_success({"server": "Neo4j/5.26.0", "connection_id": "bolt-1"}, p)
    assert success == h(
        "B1 70 A2 86 73 65 72 76 65 72 8C 4E 65 6F 34 6A 2F 35 2E 32 36 2E 30"
        " 8D 63 6F 6E 6E 65 63 74 69 6F 6E 5F 69 64 86 62 6F 6C 74 2D 31"
    )
    assert encode_record([1], p) == h("B1 71 91 01")
    assert h("B0 7E") == IGNORED_PAYLOAD
    assert decode_response(success, V50) == Success(
        {"server": "Neo4j/5.26.0", "connection_id": "bolt-1"}
    )
    assert decode_response(h("B1 71 91 01"), V50) == Record([1])
    assert decode_response(IGNORED_PAYLOAD, V50) == Ignored()


# -- every request, encoded and decoded in every version that has it ---------------------------

ALL_REQUESTS: list[Request] = [
    Hello({"user_agent": "x/1", "routing": {"address": "h:7687"}}),
    Logon({"scheme": "basic", "principal": "neo4j", "credentials": "pw"}),
    Logoff(),
    Telemetry(2),
    Route({"address": "h:7687"}, ["bm1"], "neo4j", None),
    Begin({"db": "neo4j", "mode": "r", "bookmarks": ["b"], "tx_metadata": {"app": "t"}}),
    Run("RETURN $x", {"x": 1}, {"db": "system"}),
    Pull(1000, 2),
    Pull(),
    Discard(-1, 0),
    Commit(),
    Rollback(),
    Reset(),
    Goodbye(),
]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS, ids=str)
@pytest.mark.parametrize("req", ALL_REQUESTS, ids=lambda r: type(r).__name__)
def test_request_roundtrip(req: Request, version: Version) -> None:
    if not request_defined(req.tag, version):
        with pytest.raises(ProtocolError, match="not defined"):
            encode_request(req, version)
        payload = bytes((0xB0 | 0, req.tag))
        with pytest.raises(ProtocolError, match="not defined"):
            decode_request(payload, version)
        return
    payload = encode_request(req, version)
    assert peek_tag(payload) == req.tag
    assert decode_request(payload, version) == req
    assert decode_request(bytearray(payload), version) == req
    assert decode_request(memoryview(payload), version) == req


@pytest.mark.parametrize(
    ("tag", "first"),
    [(Tag.LOGON, V51), (Tag.LOGOFF, V51), (Tag.TELEMETRY, V54), (Tag.ROUTE, V43),
     (Tag.RUN, V41), (Tag.HELLO, V41)],
)  # fmt: skip
def test_request_availability(tag: Tag, first: Version) -> None:
    for v in SUPPORTED_VERSIONS:
        assert request_defined(tag, v) is (v >= first)
    assert not request_defined(Tag.SUCCESS, V58)


def test_route_third_field_by_version() -> None:
    route = Route({}, [], "neo4j", "bob")
    assert encode_request(route, V43) == h("B3 66 A0 90 85") + b"neo4j"  # plain db, no imp_user
    assert encode_request(route, V44) == (
        h("B3 66 A0 90 A2 82") + b"db" + h("85") + b"neo4j" + h("88") + b"imp_user" + h("83")
        + b"bob"
    )  # fmt: skip
    assert encode_request(Route({}, [], None), V43) == h("B3 66 A0 90 C0")
    assert encode_request(Route({}, [], None), V44) == h("B3 66 A0 90 A0")
    # Either third-field shape is understood in any version.
    assert decode_request(h("B3 66 A0 90 C0"), V44) == Route({}, [], None, None)
    assert decode_request(encode_request(route, V44), V43) == route
    with pytest.raises(ProtocolError):
        decode_request(h("B3 66 A0 90 01"), V44)
    with pytest.raises(ProtocolError):
        decode_request(h("B3 66 A0 91 01 C0"), V44)


def test_pull_and_discard_defaults() -> None:
    assert decode_request(h("B1 3F A0"), V44) == Pull(-1, -1)
    assert decode_request(h("B1 2F A1 83 71 69 64 05"), V44) == Discard(-1, 5)
    assert encode_request(Pull(5), V44) == h("B1 3F A1 81 6E 05")  # qid -1 left out
    with pytest.raises(ProtocolError, match="'n'"):
        decode_request(h("B1 3F A1 81 6E 81 61"), V44)
    with pytest.raises(ProtocolError, match="'qid'"):
        decode_request(h("B1 3F A1 83 71 69 64 C3"), V44)


def test_tx_extra_properties() -> None:
    begin = Begin({"db": "x", "mode": "r", "bookmarks": ["a", 1], "tx_metadata": {"k": 1},
                   "tx_timeout": 500, "imp_user": "u"})  # fmt: skip
    assert (begin.db, begin.mode, begin.bookmarks, begin.tx_metadata, begin.tx_timeout,
            begin.imp_user) == ("x", "r", ["a"], {"k": 1}, 500, "u")  # fmt: skip
    # py2neo's non-standard keys are kept but do not count as the standard ones.
    run = Run("RETURN 1", {}, {"metadata": {"k": 1}, "timeout": 3, "db": 7})
    assert (run.db, run.mode, run.bookmarks, run.tx_metadata, run.tx_timeout, run.imp_user) == (
        None, "w", [], {}, None, None,
    )  # fmt: skip
    assert run.extra["metadata"] == {"k": 1}


def test_run_parameters_are_hydrated() -> None:
    params = {"d": Structure(0x44, (1,)), "when": Structure(0x46, (3600, 0, 3600)),
              "p": [Structure(0x58, (7203, 1.0, 2.0))]}  # fmt: skip
    payload = bytes((0xB3, 0x10)) + Packer().pack("RETURN $d") + Packer().pack(params)
    payload += Packer().pack({})
    run = decode_request(payload, V44)
    assert isinstance(run, Run)
    assert run.parameters == {
        "d": bv.Date(1),
        "when": bv.DateTime(0, 0, 3600),
        "p": [bv.Point2D(7203, 1.0, 2.0)],
    }


def test_run_parameters_encode_per_version() -> None:
    run = Run("RETURN $t", {"t": bv.DateTime(0, 0, 3600)}, {})
    assert h("B3 46 C9 0E 10 00 C9 0E 10") in encode_request(run, V44)
    assert h("B3 49 00 00 C9 0E 10") in encode_request(run, V44, utc_patch=True)
    assert decode_request(encode_request(run, V44), V44) == run
    assert decode_request(encode_request(run, V50), V50) == run


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("B0 99", "unknown message tag 0x99"),
        ("B0 70", "unknown message tag 0x70"),  # a response is not a request
        ("B1 0F A0", "fields"),
        ("B2 10 80 A0", "fields"),
        ("B0 01", "fields"),
        ("B1 01 90", "extra"),
        ("B3 10 01 A0 A0", "query"),
        ("B3 10 80 90 A0", "parameters"),
        ("B1 11 81 61", "extra"),
        ("B1 54 81 61", "api"),
        ("B1 6A C0", "auth"),
        ("B0 0F 00", "trailing"),
        ("91 01", "structure"),
        ("B0", "structure"),
        ("", "structure"),
    ],
)
def test_bad_requests(payload: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_request(h(payload), V58)


def test_bad_packstream_in_a_request_is_a_protocol_error() -> None:
    with pytest.raises(PackStreamError):
        decode_request(h("B1 11 A1 81 61"), V58)  # truncated map
    with pytest.raises(ProtocolError):
        decode_request(h("B1 11") + h("A1 81 61") * 70 + h("01"), V58)  # nested too deep


def test_null_parameters_and_extra_are_empty() -> None:
    assert decode_request(h("B3 10 80 C0 C0"), V44) == Run("", {}, {})
    assert decode_request(h("B1 11 C0"), V44) == Begin({})


def test_peek_tag() -> None:
    assert peek_tag(h("B1 71 91 01")) == Tag.RECORD
    with pytest.raises(ProtocolError):
        peek_tag(b"\xb1")


# -- responses ----------------------------------------------------------------------------------


def test_record_values_are_hydrated_per_version() -> None:
    node = bv.Node(1, ("L",), {}, "e1")
    for version in (V44, V50):
        payload = encode_record([node, bv.DateTime(10, 0, 60)], Packer(version))
        record = decode_response(payload, version)
        assert isinstance(record, Record)
        expected_node = node if version >= V50 else bv.Node(1, ("L",), {})
        assert record.values == [expected_node, bv.DateTime(10, 0, 60)]
        raw = decode_response(payload, version, hydrate_values=False)
        assert isinstance(raw, Record)
        assert isinstance(raw.values[0], Structure)


@pytest.mark.parametrize("version", [V44, V57])
def test_failure_roundtrip(version: Version) -> None:
    metadata = failure_metadata("Neo.ClientError.Statement.SyntaxError", "bad", version)
    payload = encode_failure(metadata, Packer(version))
    assert peek_tag(payload) == Tag.FAILURE
    failure = decode_response(payload, version)
    assert isinstance(failure, Failure)
    assert failure.metadata == failure_metadata(
        "Neo.ClientError.Statement.SyntaxError", "bad", version
    )
    assert failure.code == "Neo.ClientError.Statement.SyntaxError"
    assert failure.message == "bad"
    assert ("code" in failure.metadata) is (version < V57)
    assert normalize_failure(failure.metadata, version) is failure.metadata


def test_failure_accessors_with_garbage() -> None:
    assert Failure({}).code == "Neo.DatabaseError.General.UnknownError"
    assert Failure({"message": 1}).message == ""


@pytest.mark.parametrize(
    "resp",
    [Success({"has_more": True}), Record([1, "a", None]), Ignored(), Failure({"code": "x"})],
)
def test_encode_response(resp: Any) -> None:
    payload = encode_response(resp, Packer(V58))
    assert decode_response(payload, V58) == resp
    assert encode_failure({"code": "x"}, Packer()) == encode_response(
        Failure({"code": "x"}), Packer()
    )


@pytest.mark.parametrize(
    "payload", ["B0 99", "B0 10", "B2 70 A0 A0", "B1 70 90", "B1 71 A0", "B1 7E A0", "B1 7F 01"]
)
def test_bad_responses(payload: str) -> None:
    with pytest.raises(ProtocolError):
        decode_response(h(payload), V58)


@settings(max_examples=150)
@given(
    st.text(max_size=30),
    st.dictionaries(
        st.text(max_size=8),
        st.integers(-(2**63), 2**63 - 1) | st.text() | st.none(),
        max_size=4,
    ),
    st.integers(-1, 2**31),
    st.integers(-1, 100),
)
def test_run_and_pull_roundtrip(query: str, params: dict[str, Any], n: int, qid: int) -> None:
    for version in (V41, V44, V58):
        run = Run(query, params, {"db": "neo4j"})
        assert decode_request(encode_request(run, version), version) == run
        pull = Pull(n, qid)
        assert decode_request(encode_request(pull, version), version) == pull
