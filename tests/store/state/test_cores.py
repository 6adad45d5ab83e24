"""Per-dimension work on two threads (``store/state/cores.py``)."""

from __future__ import annotations

import threading

import pytest

from userportrait.store.state.cores import on_two_cores


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_every_item_once(n: int) -> None:
    seen: list[int] = []
    threads: set[int] = set()

    def work(i: int) -> None:
        seen.append(i)
        threads.add(threading.get_ident())

    on_two_cores(work, list(range(n)))
    assert sorted(seen) == list(range(n))
    assert len(threads) == min(n, 2)


@pytest.mark.parametrize("bad", [0, 1])
def test_an_error_of_either_half_is_raised_after_both(bad: int) -> None:
    done: list[int] = []

    def work(i: int) -> None:
        if i == bad:
            raise ValueError(f"item {i}")
        done.append(i)

    with pytest.raises(ValueError, match=f"item {bad}"):
        on_two_cores(work, [0, 1, 2, 3])
    assert 1 - bad in done  # the other half ran to its end
