"""The state update's one-ahead producer thread (``store/state/prefetch.py``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from userportrait.store.state.prefetch import prefetched


def test_items_in_order() -> None:
    assert list(prefetched(iter(range(100)), depth=2)) == list(range(100))


def test_producer_error_is_raised_to_the_consumer_after_its_items() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk full")

    got: list[int] = []
    with pytest.raises(OSError, match="disk full"):
        for item in prefetched(items()):
            got.append(item)
    assert got == [1, 2]


def test_an_early_stop_ends_the_producer_and_closes_it() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = prefetched(items(), depth=1)
    assert next(stream) == 0
    stream.close()  # what a consumer's exception or break does
    assert closed.is_set()
    assert len(produced) <= 4  # one ahead, not the whole producer
