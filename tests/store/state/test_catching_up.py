"""Catching up (``store/state/catching_up.py``): the state follows the catalog after a
crash, a deletion or a format change, reports progress, and one app's long update does not
hold back another's answers."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load
from tests.store.state.support import (
    D,
)
from userportrait.engine import get_engine
from userportrait.ingest import pipeline
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.store import state as state_mod
from userportrait.store.lake import Lake
from userportrait.store.state import StateStore, app_update, day_number


def test_state_catches_up_after_crash_between_commit_and_update(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = "wxcrash0000000001"
    load(lake, [{"appid": a, "openid": "u1", "ts": "2024-06-10T10:00:00+08:00"}], "a.ndjson")
    version = StateStore(lake).manifest.version

    def crash(_lake: Lake, _progress: object = None) -> None:
        raise SystemExit("killed after the lake commit")

    monkeypatch.setattr(pipeline, "update_state", crash)
    with pytest.raises(SystemExit):
        load(lake, [{"appid": a, "openid": "u2", "ts": "2024-06-11T10:00:00+08:00",
                     "gender": 2}], "b.ndjson")  # fmt: skip
    monkeypatch.undo()
    assert lake.catalog.version() > version
    assert StateStore(lake).manifest.version == version  # the state lags the lake
    # Half-written files of the crashed update are ignored and replaced.
    (StateStore(lake).app_dir(a) / "days" / "2024-06-11.b99.npz.tmp").write_bytes(b"junk")
    q = PortraitQuery(a, dt.date(2024, 6, 5), dt.date(2024, 6, 11))
    body = portrait(q, get_engine("duckdb", lake))
    assert body == portrait(q, get_engine("reference", lake))
    assert body["visit_uv"]["genders"] == [  # type: ignore[index]
        {"id": 0, "name": "未知", "value": 1},
        {"id": 2, "name": "女", "value": 1},
    ]
    assert StateStore(lake).manifest.version == lake.catalog.version()
    assert not list(lake.state_dir.rglob("*.tmp"))


def test_deleted_state_is_rebuilt_from_the_lake(lake: Lake) -> None:
    a = "wxgone0000000001"
    load(lake, [{"appid": a, "openid": "u1", "ts": "2024-06-10T10:00:00+08:00", "age": 30}])
    shutil.rmtree(lake.state_dir)
    q = PortraitQuery(a, dt.date(2024, 6, 10), dt.date(2024, 6, 10))
    assert get_engine("duckdb", lake).run_portrait(q).active.ids["ages"] == {4: 1}
    assert day_number("1970-01-02") == 1


def test_ingest_reports_the_state_update_as_progress(lake: Lake, tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    events = [{"appid": "wxprog000000001", "openid": "u", "ts": "2024-06-10T10:00:00+08:00"}]
    path = tmp_path / "p.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n", encoding="utf-8")
    ingest_file(lake, path, lambda desc, frac: seen.append((desc, frac)))
    state = [(d, f) for d, f in seen if d.startswith("portraits: ")]
    assert state and state[-1] == ("portraits: up to date", 1.0)
    assert [f for _, f in state] == sorted(f for _, f in state)


def test_state_of_another_format_is_rebuilt(lake: Lake) -> None:
    a = "wxformat00000001"
    load(lake, [{"appid": a, "openid": "u1", "ts": "2024-06-10T10:00:00+08:00", "gender": 2}])
    manifest = lake.state_dir / "manifest.json"
    raw = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(raw | {"format": state_mod.FORMAT - 1}))
    q = PortraitQuery(a, dt.date(2024, 6, 10), dt.date(2024, 6, 10))
    assert portrait(q, get_engine("duckdb", lake)) == portrait(q, get_engine("reference", lake))
    assert json.loads(manifest.read_text())["format"] == state_mod.FORMAT


def test_an_app_with_many_days_does_not_hold_back_another_apps_answer(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch: one app adds events on 40 days (a long update), another a few events on
    one day: the latter is updated first and published before the long update starts, so
    a reader answers it from the new state meanwhile (docs/ingest.md, durability step 6)."""
    slow, quick = "wxa000000000000001", "wxa000000000000002"  # (the slow one sorts first)
    day = dt.date(2026, 3, 31)
    load(lake, [{"appid": a, "openid": "o", "ts": f"{day}T08:00:00+08:00", "gender": 1}
                for a in (slow, quick)], "first.ndjson")  # fmt: skip
    seen: dict[str, Any] = {}
    apply = app_update.AppUpdate.apply

    def watched(self: Any, days: set[str], *args: Any) -> Any:
        if self.appid == slow:  # what a reader answers for the quick app meanwhile
            q = PortraitQuery(quick, day, day)
            seen["manifest"] = state_mod.Manifest.read(lake.state_dir).version
            seen["answer"] = portrait(q, get_engine("incremental", lake))
        return apply(self, days, *args)

    monkeypatch.setattr(app_update.AppUpdate, "apply", watched)
    batch = [{"appid": slow, "openid": f"s{k}", "ts": f"{day - D(k)}T09:00:00+08:00"}
             for k in range(1, 41)]  # fmt: skip
    batch += [{"appid": quick, "openid": f"q{k}", "ts": f"{day}T09:00:00+08:00", "gender": 2}
              for k in range(3)]  # fmt: skip
    version = lake.catalog.version()
    load(lake, batch, "batch.ndjson")
    monkeypatch.undo()
    assert seen["manifest"] == version  # (the catalog's version is published at the end)
    q = PortraitQuery(quick, day, day)
    assert seen["answer"] == portrait(q, get_engine("reference", lake))
    assert StateStore(lake).manifest.version == lake.catalog.version()
