"""Per-dimension numpy work on both cores: half the dimensions in a second thread.

Most of numpy's work here (fancy indexing, ``bincount``, ``maximum.at`` on int64) lets
go of the GIL for long stretches, so two threads over different dimensions' arrays
overlap. It pays where the update's numpy steps would otherwise leave a core idle: a
day added alone is reduced and folded after DuckDB's last fetch, with nothing beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: Below this many rows the work stays in this thread: starting one costs ~0.1 ms, more
#: than a small app's arrays take (issue 30: a thousand apps of 300 users, each day of
#: each app folded twice).
SMALL_ROWS = 20_000


def on_two_cores(work: Callable[[T], None], items: Sequence[T], rows: int | None = None) -> None:
    """``work(item)`` for every item: every other one in a second thread, the rest here
    (all here when ``rows``, the size of the work, is below ``SMALL_ROWS``). The items'
    work must touch disjoint data. Errors are raised here, after both halves."""
    if len(items) < 2 or (rows is not None and rows < SMALL_ROWS):
        for item in items:
            work(item)
        return

    def second_half() -> None:
        for item in items[1::2]:
            work(item)

    with ThreadPoolExecutor(1, thread_name_prefix="state-numpy") as pool:
        theirs = pool.submit(second_half)
        for item in items[::2]:
            work(item)
        theirs.result()  # (on an error above, leaving the pool waits for it)
