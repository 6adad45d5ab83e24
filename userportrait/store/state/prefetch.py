"""Run a producer of items ahead of its consumer, in a thread.

The state update builds day partitions in DuckDB (which releases the GIL) and folds them
into the span histograms in numpy: with the builder a chunk ahead, the two overlap instead
of taking turns on the machine's cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar, cast

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetched(Generic[T]):
    """``items``, produced in a thread (started at once) at most ``depth`` items ahead.

    An exception of the producer is raised to the consumer after the items before it;
    ``close`` (also on leaving a ``with``) stops the producer at its next item and waits
    for it, so nothing runs on after the consumer moves on."""

    def __init__(self, items: Iterator[T], depth: int = 2) -> None:
        self._items = items
        self._box: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._ended = False
        self._worker = threading.Thread(target=self._produce, name="state-prefetch", daemon=True)
        self._worker.start()

    def _offer(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._offer(_Failed(exc))
            return
        self._offer(_DONE)

    def __iter__(self) -> Prefetched[T]:
        return self

    def __next__(self) -> T:
        if self._ended:
            raise StopIteration
        item = self._box.get()
        if item is _DONE:
            self._ended = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._ended = True
            raise item.error
        return cast(T, item)

    def close(self) -> None:
        self._ended = True
        self._stop.set()
        self._worker.join()
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
