"""The proxy's settings for CPython's cyclic garbage collector (``proxy.app``, through
``transform_worker.collect_rarely``, which the transform workers call too): start-up
objects frozen out of its walks, and young collections every 50,000 allocations instead of
700 (a quarter of a stream's CPU per message went to collections with the defaults)."""

from __future__ import annotations

import gc

from proxy.app import _freeze_startup_objects
from proxy.streams.transform_worker import GC_THRESHOLDS


def test_start_up_objects_are_frozen_and_collections_come_less_often() -> None:
    before = gc.get_threshold()
    try:
        _freeze_startup_objects()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_garbage_cycle_is_still_collected() -> None:
    """Rarer collections, not none: a cycle made after start-up goes at the next one."""
    import weakref

    before = gc.get_threshold()
    try:
        _freeze_startup_objects()

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # reference counting alone cannot free a cycle
        # No explicit collection: allocating past the threshold makes the collector run.
        keep = [[] for _ in range(GC_THRESHOLDS[0] * 2)]
        assert gone() is None
        del keep
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
