"""SHOW STREAMS while the broker does not answer must never take the proxy down.

``bench/soak.py`` found the proxy dead by SIGABRT a minute into the soak, inside librdkafka
(``rd_kafka_enq_once_del_source_return: Assertion eonce->refcnt > 0``): SHOW STREAMS read
each stream's lag with the admin API's ListConsumerGroupOffsets, and librdkafka 2.x aborts
when such a coordinator request times out and its answer or retry comes late (#4605). The
lag is now read with a consumer of the stream's group. Here the broker is frozen (SIGSTOP)
while SHOW STREAMS asks for lags again and again, then thawed, a few times over."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.streams.broker import Broker
from tests.streams.conftest import run, show, start_proxy, stream_name, wait_until

pytestmark = pytest.mark.timeout(240)


def test_show_streams_while_the_broker_is_frozen_keeps_the_proxy_alive(
    tmp_path: Path, transforms: Path
) -> None:
    import neo4j

    broker = Broker().start()
    proxy = start_proxy(tmp_path / "data", transforms)
    try:
        topic = broker.create_topic("frozen")
        broker.produce(topic, ["a", "b", "c"], one_by_one=True)
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("u", "p")) as driver:
            names = [stream_name("lag") for _ in range(3)]
            for name in names:
                run(
                    driver,
                    f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
                    f"WITH TOPIC '{topic}' WITH TRANSFORM '{transforms / 'create.py'}'",
                )
            assert show(driver, names[0])["lag"] == 3
            assert broker.proc is not None
            for _ in range(3):
                broker.proc.send_signal(signal.SIGSTOP)
                try:
                    asking = [
                        threading.Thread(target=_show_streams, args=(driver,)) for _ in range(4)
                    ]
                    for thread in asking:
                        thread.start()
                    time.sleep(4)  # past the lag's 3 s timeout: its requests are abandoned
                finally:
                    broker.proc.send_signal(signal.SIGCONT)
                for thread in asking:
                    thread.join(30)
                time.sleep(2)  # the late answers arrive
                assert proxy.proc is not None and proxy.proc.poll() is None, proxy.log_text()
            assert wait_until(lambda: show(driver, names[0])["lag"] == 3, 30)
            for name in names:
                run(driver, f"DROP STREAM {name}")
        assert proxy.proc is not None and proxy.proc.poll() is None, proxy.log_text()
        assert "Assertion" not in proxy.log_text()
    finally:
        proxy.stop()
        broker.stop()


def _show_streams(driver: Any) -> None:
    for _ in range(3):
        try:
            run(driver, "SHOW STREAMS")
        except Exception:  # the proxy's death shows in the test, not here
            return
