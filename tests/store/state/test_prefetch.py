"""The state update's one-ahead producer thread (``store/state/prefetch.py``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from userportrait.store.state.prefetch import Prefetched


def test_items_in_order() -> None:
    assert list(Prefetched(iter(range(100)), depth=2)) == list(range(100))


def test_producer_error_is_raised_to_the_consumer_after_its_items() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk full")

    got: list[int] = []
    with pytest.raises(OSError, match="disk full"):
        with Prefetched(items()) as stream:
            for item in stream:
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

    stream = Prefetched(items(), depth=1)
    assert next(stream) == 0
    stream.close()  # what leaving the ``with`` does, on an exception too
    assert closed.is_set()
    assert len(produced) <= 4  # one ahead, not the whole producer


def test_the_producer_starts_before_the_first_item_is_asked_for() -> None:
    started = threading.Event()

    def items() -> Iterator[int]:
        started.set()
        yield 1

    with Prefetched(items()) as stream:
        assert started.wait(5)  # the consumer can prepare meanwhile
        assert list(stream) == [1]
