"""``userportrait demo``: a realistic data set in a named data directory, ready to browse.

The directory is marked by ``demo.json``; a second run reuses what is there when it still
ends yesterday (Asia/Shanghai), and otherwise rebuilds it (only a marked directory is ever
cleared), so the dashboard's "yesterday" window always has data.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from userportrait.portrait.query import today_shanghai
from userportrait.synthetic.generate import GeneratorConfig, write_events

MARKER: Final = "demo.json"
APPS: Final = {"wx0000000000000001": "demo-secret", "wx0000000000000002": "demo-secret-2"}
DEMO_APPID: Final = "wx0000000000000001"
DEMO_SECRET: Final = APPS[DEMO_APPID]

#: (description, fraction done) -> None
Tick = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class DemoData:
    data_dir: Path
    end: dt.date
    users: int
    days: int
    reused: bool
    admin_key: str
    #: The demo app's write-only key, new on every run (only its digest is stored).
    ingest_key: str


def _marker(data_dir: Path) -> dict[str, object] | None:
    try:
        loaded: dict[str, object] = json.loads((data_dir / MARKER).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return loaded


def prepare(
    data_dir: Path, *, users: int = 200_000, days: int = 40,
    on_generate: Tick | None = None, on_ingest: Tick | None = None,
) -> DemoData:  # fmt: skip
    """Generate and ingest the demo events (or reuse them), register the demo apps and
    give the first a new ingest key."""
    from userportrait.auth.store import AuthStore
    from userportrait.dashboard.sessions import admin_key_path, write_admin_key
    from userportrait.ingest.pipeline import ingest_file
    from userportrait.settings import Settings
    from userportrait.store.lake import Lake

    end = today_shanghai() - dt.timedelta(days=1)
    wanted = {"end": f"{end:%Y%m%d}", "users": users, "days": days}
    marker = _marker(data_dir)
    reused = marker == wanted
    if not reused:
        if marker is not None:
            shutil.rmtree(data_dir)  # an older demo: only a marked directory is cleared
        elif data_dir.exists() and any(data_dir.iterdir()):
            raise ValueError(f"{data_dir} is not empty and not a demo directory")
        data_dir.mkdir(parents=True, exist_ok=True)
        events = data_dir / "demo-events.parquet"
        config = GeneratorConfig(users=users, days=days, end=end, apps=len(APPS), seed=13)
        gen = on_generate or (lambda _d, _f: None)
        done = [0]

        def day() -> None:
            done[0] += 1
            gen(f"day {done[0]}/{days}", done[0] / days)

        write_events(events, config, day)
        ingest_file(Lake(Settings(data_dir=data_dir)), events, on_ingest)
        events.unlink()
        (data_dir / MARKER).write_text(json.dumps(wanted), "utf-8")
    auth = AuthStore(data_dir / "meta.sqlite")
    registered = {a for a, _ in auth.apps()}
    for appid, secret in APPS.items():
        if appid not in registered:
            auth.add_app(appid, secret)
    key_file = admin_key_path(data_dir)
    key = key_file.read_text("utf-8").strip() if key_file.exists() else write_admin_key(data_dir)
    ingest_key = auth.new_ingest_key(DEMO_APPID)
    return DemoData(data_dir, end, users, days, reused, key, ingest_key)
