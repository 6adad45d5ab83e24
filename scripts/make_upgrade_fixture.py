"""Write the previous release's data directory and its answers, for tests/test_upgrade.py.

Run it with the PREVIOUS release's code first on the path (docs/storage.md, "Format
changes"), e.g. for the release before ``e6db8a2``'s successor::

    git archive e6db8a2 | tar -x -C /tmp/prev
    PYTHONPATH=/tmp/prev python scripts/make_upgrade_fixture.py tests/upgrade

It writes ``OUT/data/`` (a small data directory: two apps, three days, profiles, a threshold,
an allow-list, a dashboard admin key, the derived state) and ``OUT/answers.json`` (what
that release answered: CLI portraits, the datacube route, the dashboard's trend).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

APPS = {"wxupgrade00000001": "first-secret-0001", "wxupgrade00000002": "second-secret-0002"}
ADMIN_KEY = "upgrade-admin-key-0001"
END = "20260110"
#: (appid, begin, end): windows asked of the CLI and of the datacube route (1 and 7 days).
WINDOWS = [
    ("wxupgrade00000001", "20260110", "20260110"),
    ("wxupgrade00000001", "20260104", "20260110"),
    ("wxupgrade00000002", "20260109", "20260109"),
    ("wxupgrade00000002", "20260104", "20260110"),
]
TREND = ("wxupgrade00000001", "20260104", "20260110")


def cli(data: Path, *args: str) -> str:
    env = {**os.environ, "USERPORTRAIT_DATA_DIR": str(data)}
    cmd = [sys.executable, "-m", "userportrait", *args]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout


async def served(data: Path) -> dict[str, Any]:
    import httpx
    from asgi_lifespan import LifespanManager

    from userportrait.app import create_app
    from userportrait.settings import Settings

    app = create_app(Settings.from_env(data_dir=data))
    out: dict[str, Any] = {"datacube": [], "trend": None}
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            for appid, begin, end in WINDOWS:
                token = await c.get(
                    "/cgi-bin/token",
                    params={
                        "grant_type": "client_credential",
                        "appid": appid,
                        "secret": APPS[appid],
                    },
                )
                res = await c.post(
                    "/datacube/getweanalysisappiduserportrait",
                    params={"access_token": token.json()["access_token"]},
                    json={"begin_date": begin, "end_date": end},
                )
                out["datacube"].append([appid, begin, end, res.json()])
            res = await c.post("/dashboard/signin", json={"admin_key": ADMIN_KEY})
            assert res.json()["errcode"] == 0, res.text
            appid, begin, end = TREND
            res = await c.get(
                "/dashboard/trend", params={"appid": appid, "begin": begin, "end": end}
            )
            out["trend"] = [appid, begin, end, res.json()]
    return out


def main(out: Path) -> None:
    import userportrait

    data = out / "data"
    shutil.rmtree(data, ignore_errors=True)
    work = out / "_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    events, profiles = work / "events.ndjson", work / "profiles.ndjson"
    cli(data, "generate", str(events), "--users", "300", "--days", "3", "--apps", "2",
        "--end", END, "--event-ids", "--profiles", str(profiles), "-q")  # fmt: skip
    # The generator names its apps; the fixture's are renamed to fixed, readable ones.
    lines = events.read_text("utf-8").splitlines()
    generated = sorted({json.loads(line)["appid"] for line in lines})
    rename = dict(zip(generated, APPS, strict=True))
    for path in (events, profiles):
        rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        for row in rows:
            row["appid"] = rename[row["appid"]]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    cli(data, "ingest", str(events), "-q")
    cli(data, "ingest", "--profiles", str(profiles), "-q")
    for appid, secret in APPS.items():
        cli(data, "apps", "add", "--appid", appid, "--secret", secret)
    cli(data, "apps", "threshold", "--appid", "wxupgrade00000002", "--k", "3")
    cli(data, "apps", "allow-ip", "--appid", "wxupgrade00000001", "127.0.0.1/32", "10.0.0.0/8")
    cli(data, "dashboard", "admin-key", "--set", ADMIN_KEY)
    answers: dict[str, Any] = {"version": userportrait.__version__, "portrait": []}
    for appid, begin, end in WINDOWS:
        raw = cli(data, "portrait", "--appid", appid, "--begin", begin, "--end", end)
        answers["portrait"].append([appid, begin, end, json.loads(raw)])
    answers.update(asyncio.run(served(data)))
    shutil.rmtree(work)
    # Work in progress and SQLite's side files are not part of a data directory at rest.
    for junk in ("_tmp", "_staging", "wal"):
        shutil.rmtree(data / junk, ignore_errors=True)
    for path in data.glob("*.sqlite"):
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()  # the last connection: SQLite removes its -wal and -shm files
    for path in data.rglob("*.lock"):
        path.unlink()
    (out / "answers.json").write_text(
        json.dumps(answers, ensure_ascii=False, sort_keys=True) + "\n", "utf-8"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
