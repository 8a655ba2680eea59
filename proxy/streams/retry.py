"""Transient failures of a running stream: backoff, attempts, what users see, what the log says.

A stream retries what may work later: writing to the graph while the backend is away, reading
from or committing to Kafka while the broker is. For each such *outage* a stream keeps one
``Outage``: it counts the real attempts, says what is being retried in ``last_error``
(``writing to the graph: <reason> (transient; retrying, attempt 3)``, then ``... (transient;
recovered after 3 retries)``), and logs a state change once: when it starts (a warning), every
``still_every`` seconds while it lasts (``still failing``), and when it ends (``recovered``),
never a line per attempt. ``retrying`` runs an operation through an outage with exponential
backoff; STOP interrupts the wait.

An operation that neither succeeds nor fails (a backend that was stopped or hangs keeps the
connection open and answers nothing) is an outage too: after ``slow_after`` seconds
``last_error`` says ``<what>: no answer for N s (transient; waiting)`` and the log says it
once; the answer, when it comes, ends it like a recovery. The backend's own timeout
(``backend_query_timeout``) then turns the wait into a failure that is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("boltstream.streams")
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial`` seconds before the second attempt, doubling up to
    ``maximum``."""

    initial: float = 0.2
    maximum: float = 10.0

    def delay(self, attempt: int) -> float:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.maximum, self.initial * 2 ** min(attempt - 1, 60)))


class Health:
    """What SHOW STREAMS says about a running stream's troubles: ``last_error``, and the
    outages going on now (``status_detail``). Outages of the consumer thread write here too
    (single assignments and dict updates: atomic under the GIL)."""

    def __init__(self, last_error: str | None = None) -> None:
        self.last_error = last_error
        self.troubles: dict[str, tuple[str, float]] = {}  # what -> (retrying|waiting, since)

    def detail(self, now: float | None = None) -> str:
        """``healthy``, or ``transient outage: <what> (<state> for N s); ...``."""
        troubles = dict(self.troubles)
        if not troubles:
            return "healthy"
        now = time.monotonic() if now is None else now
        parts = [
            f"{what} ({state} for {max(0.0, now - since):.0f} s)"
            for what, (state, since) in sorted(troubles.items())
        ]
        return "transient outage: " + "; ".join(parts)


class Interrupted(Exception):
    """STOP came while an operation waited to be retried: it was not done."""


class Outage:
    """One kind of transient failure of one stream (see the module docstring)."""

    def __init__(
        self,
        stream: str,
        what: str,
        health: Health,
        backoff: Backoff,
        *,
        still_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.what = what
        self.health = health
        self.backoff = backoff
        self.still_every = still_every
        self.clock = clock
        self.attempts = 0  # failed attempts in the current outage; 0: none going on
        self.since = 0.0
        self._logged = 0.0
        self.waiting_since: float | None = None  # an attempt with no answer yet (``waiting``)

    @property
    def ongoing(self) -> bool:
        return self.attempts > 0 or self.waiting_since is not None

    def waiting(self, seconds: float) -> None:
        """An attempt has had no answer for ``seconds``: say so (once per attempt)."""
        if self.waiting_since is not None:
            return
        self.waiting_since = self.clock() - seconds
        self.health.troubles[self.what] = ("waiting", self.waiting_since)
        log.warning("stream %s: %s: no answer for %g s, waiting", self.stream, self.what, seconds)
        self.health.last_error = f"{self.what}: no answer for {seconds:g} s (transient; waiting)"

    def failed(self, reason: str) -> float:
        """One more attempt failed; returns how long to wait before the next."""
        now = self.clock()
        self.waiting_since = None
        self.attempts += 1
        if self.attempts == 1:
            self.since = self._logged = now
            self.health.troubles[self.what] = ("retrying", now)
            log.warning("stream %s: %s failed, retrying: %s", self.stream, self.what, reason)
        elif now - self._logged >= self.still_every:
            self._logged = now
            log.warning(
                "stream %s: %s still failing after %d attempts in %.0f s: %s",
                self.stream,
                self.what,
                self.attempts,
                now - self.since,
                reason,
            )
        self.health.last_error = (
            f"{self.what}: {reason} (transient; retrying, attempt {self.attempts})"
        )
        return self.backoff.delay(self.attempts)

    def recovered(self) -> None:
        """The operation worked: the outage, if any, is over."""
        waited, self.waiting_since = self.waiting_since, None
        self.health.troubles.pop(self.what, None)
        if waited is not None and not self.attempts:
            seconds = self.clock() - waited
            log.info("stream %s: %s answered after %.1f s", self.stream, self.what, seconds)
            error = self.health.last_error
            if error is not None and error.startswith(f"{self.what}: no answer for "):
                self.health.last_error = (
                    f"{self.what}: no answer for {seconds:.0f} s "
                    "(transient; recovered: answered late)"
                )
            return
        if not self.attempts:
            return
        attempts, self.attempts = self.attempts, 0
        log.info(
            "stream %s: %s recovered after %d retries in %.1f s",
            self.stream,
            self.what,
            attempts,
            self.clock() - self.since,
        )
        error = self.health.last_error
        mark = f"(transient; retrying, attempt {attempts})"
        if error is not None and error.startswith(f"{self.what}: ") and error.endswith(mark):
            self.health.last_error = (
                error[: -len(mark)] + f"(transient; recovered after {attempts} retries)"
            )


async def retrying(
    operation: Callable[[], Awaitable[T]],
    outage: Outage,
    transient: type[BaseException] | tuple[type[BaseException], ...],
    *,
    stopping: asyncio.Event | None = None,
    slow_after: float | None = None,
) -> T:
    """Run ``operation`` until it does not raise ``transient``, waiting by ``outage``'s backoff
    between attempts. Raises ``Interrupted`` when ``stopping`` is set during a wait. An
    attempt with no answer after ``slow_after`` seconds is reported (``Outage.waiting``)."""
    while True:
        try:
            if slow_after is None:
                result = await operation()
            else:
                result = await _watched(operation(), outage, slow_after)
        except transient as exc:
            delay = outage.failed(str(exc))
            if stopping is None:
                await asyncio.sleep(delay)
                continue
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except TimeoutError:
                continue
            raise Interrupted from None
        outage.recovered()
        return result


async def _watched(operation: Awaitable[T], outage: Outage, slow_after: float) -> T:
    task = asyncio.ensure_future(operation)
    try:
        done, _ = await asyncio.wait({task}, timeout=slow_after)
        if not done:
            outage.waiting(slow_after)
        return await task
    finally:
        if not task.done():
            task.cancel()
