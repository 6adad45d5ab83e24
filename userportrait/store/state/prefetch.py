"""Run a producer of items one step ahead of its consumer, in a thread.

The state update builds day partitions in DuckDB (which releases the GIL) and folds them
into the span histograms in numpy: with the builder a chunk ahead, the two overlap instead
of taking turns on the machine's cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar, cast

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """``items``, produced in a thread at most ``depth`` items ahead. An exception of the
    producer is raised here; closing this iterator early stops the producer at its next
    item (and waits for it, so nothing runs on after the caller moves on)."""
    box: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            offer(_Failed(exc))
            return
        offer(_DONE)

    worker = threading.Thread(target=produce, name="state-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = box.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield cast(T, item)
    finally:
        stop.set()
        worker.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()
