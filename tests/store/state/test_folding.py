"""The newest day's overlay folded off the flushes' path (``state/folding.py``).

A fold built from a snapshot while flushes go on, swapped in with only their rows left
over; a fold dropped because the day changed meanwhile; a fold that crashed before or
during its swap; the server's folder thread. Every time: the answers of a fresh load,
for a reader opened before the fold too.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load
from userportrait.engine import get_engine
from userportrait.engine.incremental import IncrementalEngine
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake
from userportrait.store.state import folding as state_folding
from userportrait.store.state.folding import (
    FOLD_DIR,
    Fold,
    OverlayFolder,
    fold_overlays,
    folding,
)
from userportrait.store.state.manifest import Manifest
from userportrait.store.state.overlay import Overlay

A = "wxfold0000000001"
DAY = dt.date(2024, 6, 10)
D = dt.timedelta
FIELDS: dict[str, list[Any]] = {
    "gender": [1, 2],
    "city": ["广州", "深圳", "成都"],
    "platform": ["ios", "android"],
    "device": ["A1", "B2", "Zz"],
    "age": [19, 30, 61],
}


def _batch(rng: random.Random, day: dt.date, users: range, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        e: dict[str, Any] = {
            "appid": A,
            "openid": f"u{rng.choice(users)}",
            "ts": f"{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00+08:00",
        }
        for f, values in FIELDS.items():
            if rng.random() < 0.5:
                e[f] = rng.choice(values)
        out.append(e)
    return out


class Twin:
    """The lake under test and a fresh lake loaded at once with the same events."""

    def __init__(self, tmp_path: Path, lake: Lake) -> None:
        self.lake = lake
        self.events: list[dict[str, Any]] = []
        self.tmp_path = tmp_path
        self.rng = random.Random(7)
        self.k = 0

    def flush(self, day: dt.date = DAY, users: range = range(40), n: int = 12) -> None:
        batch = _batch(self.rng, day, users, n)
        self.events += batch
        self.k += 1
        load(self.lake, batch, f"b{self.k}.ndjson")

    def same_answers(self, reader: IncrementalEngine | None = None) -> None:
        fresh = Lake(Settings(data_dir=self.tmp_path / f"fresh{self.k}"))
        load(fresh, self.events, f"all{self.k}.ndjson")
        mine = get_engine("duckdb", self.lake)
        theirs = get_engine("duckdb", fresh)
        for n in (1, 2, 7, 30, 400):  # 400: from the day partitions
            for end in (DAY - D(1), DAY, DAY + D(1)):
                q = PortraitQuery(A, end - D(n - 1), end)
                expected = portrait(q, theirs)
                assert portrait(q, mine) == expected, (n, end)
                if reader is not None:  # opened before: it follows the catalog
                    assert portrait(q, reader) == expected, (n, end)
        mine.close()
        theirs.close()


@pytest.fixture
def twin(tmp_path: Path, lake: Lake) -> Twin:
    t = Twin(tmp_path, lake)
    t.flush(DAY - D(1), range(30), 40)
    t.flush(DAY, range(20), 30)  # a new day: its files
    t.flush()  # flushes: its overlay
    t.flush()
    return t


def _app(lake: Lake) -> Any:
    return Manifest.read(lake.state_dir).apps[A]


def _prepare(lake: Lake) -> Fold:
    with folding(lake) as mine:
        assert mine
        return Fold.prepare(lake, A, _app(lake))


def test_flushes_during_a_fold_stay_in_the_overlay(twin: Twin) -> None:
    lake = twin.lake
    before = IncrementalEngine(lake)
    twin.same_answers()
    snapshot = _app(lake)
    with folding(lake) as mine:
        assert mine
        fold = Fold.prepare(lake, A, snapshot)
        twin.flush(users=range(30, 45), n=6)  # during the fold: new users and known ones
        flushed = _app(lake).overlay
        assert fold_overlays(lake, limit=1) == []  # one fold at a time: this one is at work
        twin.same_answers(before)  # the fold built, not swapped in yet
        assert fold.swap()
    app = _app(lake)
    assert app.days[str(DAY)] != snapshot.days[str(DAY)]  # the day's files written anew
    assert app.heads[str(DAY)] != snapshot.heads[str(DAY)]
    assert app.first_day != snapshot.first_day
    assert app.version == snapshot.version + 1  # the flush's; the fold keeps it
    assert app.overlay and app.overlay != flushed  # what the last flush changed, only
    path = lake.state_dir / f"appid={A}" / app.overlay[str(DAY)]
    assert 0 < Overlay.users(path) <= 6
    assert not (lake.state_dir / FOLD_DIR / f"appid={A}").exists()
    twin.same_answers(before)
    twin.flush()  # on top of the folded files and what is left over
    twin.same_answers(before)
    twin.flush(DAY + D(1), range(10, 50), 10)  # a new day folds what is left first
    assert not _app(lake).overlay
    twin.same_answers(before)


def test_a_fold_is_dropped_when_the_day_changed_meanwhile(twin: Twin) -> None:
    fold = _prepare(twin.lake)
    twin.flush(DAY + D(1), n=5)  # a new day: the writer folds the overlay itself
    after = _app(twin.lake)
    assert not fold.swap()
    assert _app(twin.lake) == after
    assert not fold.staged.exists()
    twin.same_answers()


def test_a_fold_that_crashed_before_its_swap_is_ignored(twin: Twin) -> None:
    _prepare(twin.lake)  # ... and the process dies: its files stay in state/_fold/
    staged = twin.lake.state_dir / FOLD_DIR / f"appid={A}"
    assert list(staged.rglob("*.npys"))
    twin.flush()
    twin.same_answers(IncrementalEngine(twin.lake))
    assert fold_overlays(twin.lake, limit=1) == [A]
    assert not staged.exists()
    assert not _app(twin.lake).overlay
    twin.same_answers()


def test_a_fold_that_crashed_during_its_swap_leaves_the_old_state(
    twin: Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _app(twin.lake)

    def crash(*_args: object) -> None:
        raise SystemExit("killed before the manifest")

    monkeypatch.setattr(state_folding, "publish", crash)
    fold = _prepare(twin.lake)
    with pytest.raises(SystemExit):
        fold.swap()
    monkeypatch.undo()
    assert _app(twin.lake) == before
    app_dir = twin.lake.state_dir / f"appid={A}"
    assert list(app_dir.rglob("*.fold.*"))  # moved in, named by no manifest
    twin.same_answers(IncrementalEngine(twin.lake))
    twin.flush()  # its publish removes them
    assert not list(app_dir.rglob("*.fold.*"))
    twin.same_answers()
    assert fold_overlays(twin.lake, limit=1) == [A]
    twin.same_answers()


def test_the_folder_thread_folds_when_poked(twin: Twin) -> None:
    folder = OverlayFolder(twin.lake, limit=1)
    folder.start()
    try:
        folder.poke()
        deadline = time.monotonic() + 30
        while not folder.folds and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        folder.stop()
    assert len(folder.folds) == 1
    assert not _app(twin.lake).overlay
    twin.same_answers()


def test_a_failing_fold_waits_before_it_tries_again(
    twin: Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[int] = []

    def fail(self: Fold) -> None:
        tries.append(1)
        raise OSError("disk full")

    monkeypatch.setattr(Fold, "build_apart", fail)
    folder = OverlayFolder(twin.lake, limit=1)
    folder.start()
    try:
        for _ in range(3):
            folder.poke()
            time.sleep(0.3)
    finally:
        folder.stop()
    assert tries == [1] and not folder.folds  # once, then the back-off
    assert _app(twin.lake).overlay  # the state as it was: the flushes' overlay
    twin.same_answers()
