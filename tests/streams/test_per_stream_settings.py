"""Several topics, per-stream settings and credentials: the definition document, the checks
CREATE makes before any client exists, what reaches the clients, what is shown."""

from __future__ import annotations

import json

import pytest

from proxy.streams.clauses import StreamError, check_settings, redact, validate_client
from proxy.streams.definition import REDACTED, StreamDefinition, TransformRef
from proxy.streams.kafka import admin_config, consumer_config, producer_config

DEFINITION = StreamDefinition(
    name="s",
    uri="h:9092",
    topic="a",
    transform=TransformRef("/m/mod.py", "code", "0" * 64),
    batch_interval_ms=100,
    batch_size=10,
    consumer_group="g",
    more_topics=("b", "c"),
    configs=(("client.id", "mine"), ("fetch.wait.max.ms", "10")),
    credentials=(("sasl.password", "pw-secret"),),
    transformation="mod.proc",
)


def test_the_document_round_trips_and_older_documents_still_read() -> None:
    assert StreamDefinition.from_json(DEFINITION.to_json()) == DEFINITION
    old = json.loads(DEFINITION.to_json())
    for key in ("more_topics", "configs", "credentials", "transformation"):
        del old[key]
    old["version"] = 1
    read = StreamDefinition.from_json(json.dumps(old))
    assert read.topics == ("a",) and read.settings == {} and read.transformation is None


def test_what_is_shown_of_a_definition() -> None:
    assert DEFINITION.topics == ("a", "b", "c")
    assert DEFINITION.shown_topics == "a,b,c"
    assert DEFINITION.shown_credentials() == {"sasl.password": REDACTED}
    assert "pw-secret" not in repr(DEFINITION)


def test_the_stream_settings_reach_every_client_and_the_engine_keeps_its_own() -> None:
    base = {"session.timeout.ms": "2000", "client.id": "proxy-wide", "sasl.password": "old"}
    consumer = consumer_config(DEFINITION, base)
    assert consumer["client.id"] == "mine" and consumer["sasl.password"] == "pw-secret"
    assert consumer["fetch.wait.max.ms"] == "10" and consumer["session.timeout.ms"] == "2000"
    assert consumer["group.id"] == "g" and consumer["bootstrap.servers"] == "h:9092"
    assert consumer["enable.auto.commit"] is False
    admin = admin_config(DEFINITION.uri, base, DEFINITION.settings)
    assert admin["sasl.password"] == "pw-secret" and "fetch.wait.max.ms" not in admin
    assert producer_config(DEFINITION, base)["sasl.password"] == "pw-secret"


@pytest.mark.parametrize(
    ("configs", "credentials", "message"),
    [
        ((("group.id", "x"),), (), "CONFIGS may not set 'group.id'"),
        ((), (("bootstrap.servers", "x"),), "CREDENTIALS may not set 'bootstrap.servers'"),
        ((("enable.auto.commit", "true"),), (), "may not set 'enable.auto.commit'"),
        ((("client.id", "a"),), (("client.id", "b"),), "'client.id' is given more than once"),
        ((("client.id", "a\x00b"),), (), "control character"),
        ((), (("sasl.password", "a\nb"),), "control character"),
    ],
)
def test_settings_refused_before_any_client(
    configs: tuple[tuple[str, str], ...], credentials: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(StreamError) as raised:
        check_settings("s", configs, credentials)
    assert message in raised.value.message
    for _key, value in credentials:
        assert value not in raised.value.message


def test_librdkafka_refuses_bad_settings_and_never_quotes_a_credential() -> None:
    base = {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}
    with pytest.raises(ValueError, match=r"no\.such\.setting"):
        validate_client({**base, "no.such.setting": "1"}, ())
    with pytest.raises(ValueError) as raised:
        validate_client({**base, "security.protocol": "TOPSECRET"}, ("TOPSECRET",))
    assert "TOPSECRET" not in str(raised.value) and REDACTED in str(raised.value)
    validate_client({**base, "client.id": "x", "sasl.password": "p"}, ("p",))


def test_secret_looking_configs_are_shown_redacted_too() -> None:
    definition = StreamDefinition.from_json(DEFINITION.to_json())
    mixed = StreamDefinition(
        **{
            **{f: getattr(definition, f) for f in ("name", "uri", "topic", "transform")},
            "batch_interval_ms": 100,
            "batch_size": 10,
            "consumer_group": "g",
            "configs": (("client.id", "c"), ("ssl.keystore.password", "ks-pw")),
            "credentials": (("sasl.password", "pw"),),
        }
    )
    assert mixed.shown_configs() == {"client.id": "c", "ssl.keystore.password": REDACTED}
    assert set(mixed.secrets) == {"pw", "ks-pw"}


def test_redact_replaces_every_secret_longest_first() -> None:
    assert redact("a pw and pw2 here", ("pw", "pw2")) == f"a {REDACTED} and {REDACTED} here"
    assert redact("nothing", ()) == "nothing"
