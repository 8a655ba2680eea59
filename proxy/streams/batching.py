"""How a stream's messages become batches: the documented rule, in one place.

A batch closes when it holds ``BATCH_SIZE`` messages, or ``BATCH_INTERVAL`` after its first
message arrived, whichever comes first; an interval without a message makes no batch. The
transform is called with batches formed this way, one batch per call, whether the stream is
caught up (batches close by time) or behind (they close by size, however many are waiting),
so ``TEST STREAM`` shows what a run does.

``BatchFormer`` is pure: it is fed messages with the time they arrived and the time now, and
hands back closed batches. The Kafka consumer thread (``kafka.py``) drives it; tests drive it
with a fake clock.
"""

from __future__ import annotations

from typing import Any

from proxy.streams.positions import next_offsets


class BatchFormer:
    """Forms batches of up to ``size`` messages, closing a batch ``interval`` seconds after
    its first message arrived."""

    def __init__(self, size: int, interval: float) -> None:
        if size < 1 or interval <= 0:
            raise ValueError("a batch needs a positive size and interval")
        self.size = size
        self.interval = interval
        self._open: list[Any] = []
        self._deadline: float | None = None

    @property
    def deadline(self) -> float | None:
        """When the open batch closes (None: no open batch)."""
        return self._deadline

    @property
    def pending(self) -> int:
        """Messages in the open batch."""
        return len(self._open)

    def add(self, messages: list[Any], arrived: float) -> list[list[Any]]:
        """Take ``messages`` (in order; they arrived at ``arrived``); return the batches they
        closed by size. The rest waits in the open batch."""
        closed: list[list[Any]] = []
        start = 0
        count = len(messages)
        while start < count:
            if not self._open:
                self._deadline = arrived + self.interval
            take = min(self.size - len(self._open), count - start)
            if not self._open and take == self.size:
                closed.append(messages[start : start + take])  # a whole batch: no copy kept
            else:
                self._open.extend(messages[start : start + take])
                if len(self._open) == self.size:
                    closed.append(self._open)
                    self._open = []
            if not self._open:
                self._deadline = None
            start += take
        return closed

    def due(self, now: float) -> list[Any] | None:
        """The open batch, if its interval is over at ``now``."""
        if self._deadline is not None and now >= self._deadline:
            return self.flush()
        return None

    def flush(self) -> list[Any] | None:
        """Close the open batch now, whatever its size (None if there is none)."""
        batch, self._open, self._deadline = self._open, [], None
        return batch or None

    def clear(self) -> int:
        """Drop the open batch (after a seek or a rebalance); how many messages it held."""
        dropped = len(self._open)
        self._open, self._deadline = [], None
        return dropped


class Batch:
    """One formed batch: its messages (confluent-kafka ``Message`` objects, or anything with
    the same methods), the consumer's epoch when it was formed (batches of an older epoch are
    dropped: a seek or a rebalance happened since), and the bytes of its values."""

    __slots__ = ("_after", "epoch", "messages", "nbytes")

    def __init__(self, messages: list[Any], epoch: int, nbytes: int) -> None:
        self.messages = messages
        self.epoch = epoch
        self.nbytes = nbytes
        self._after: dict[tuple[str, int], int] | None = None

    def after(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the offset after the batch's last message there (computed
        once: each write and commit of the batch asks)."""
        if self._after is None:
            self._after = next_offsets(self.messages)
        return self._after

    def __len__(self) -> int:
        return len(self.messages)

    def values(self) -> list[bytes]:
        return [message.value() or b"" for message in self.messages]

    def __repr__(self) -> str:
        return f"Batch({len(self.messages)} messages, epoch {self.epoch})"
