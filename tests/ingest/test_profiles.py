"""Loading profiles: ``ingest --profiles`` (files) and ``POST /v1/profiles`` (issue 17)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.conftest import load, write_ndjson
from tests.server import asgi_client, ingest_headers
from userportrait.auth.store import AuthStore
from userportrait.cli import cli
from userportrait.engine import get_engine
from userportrait.ingest.profiles import ingest_profiles_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake

A = "wxprof0000000001"
SECRET = "prof-secret-1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def genders(lake: Lake) -> list[dict[str, Any]]:
    eng = get_engine("reference", lake)
    q = PortraitQuery(A, dt.date(2024, 6, 10), dt.date(2024, 6, 12))
    return list(portrait(q, eng)["visit_uv"]["genders"])


def test_cli_reports_accepted_and_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERPORTRAIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("USERPORTRAIT_DUCKDB_MEMORY_LIMIT_MB", "512")
    src = tmp_path / "profiles.ndjson"
    lines = [
        json.dumps({"appid": A, "openid": "a", "gender": "女", "birth_date": "1990-01-02"}),
        json.dumps({"appid": A, "gender": 1}),
        "{not json",
        json.dumps({"appid": A, "openid": "b", "birth_date": "1990-13-01"}),
        "",
        json.dumps({"appid": A, "openid": "c", "updated_at": "soon"}),
        json.dumps({"appid": A, "openid": "d", "birth_year": 1985, "city": "广州"}),
    ]
    src.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["ingest", "--profiles", str(src)])
    assert res.exit_code == 0, res.output
    out = res.output.splitlines()
    assert out[:5] == [
        f"{src}: 2 accepted, 4 rejected",
        f"  rejected {src}:2: openid is missing",
        f"  rejected {src}:3: not valid JSON",
        f"  rejected {src}:4: birth_date is not a date (YYYY-MM-DD or YYYYMMDD): 1990-13-01",
        f"  rejected {src}:6: updated_at is not a timestamp: soon",
    ]
    assert out[5].startswith(f"  all rejected records: {tmp_path / 'data' / 'rejects'}")
    kept = [json.loads(x) for x in Path(out[5].split(": ", 1)[1]).read_text().splitlines()]
    assert kept[0] == {"file": str(src), "line": 2, "reason": "openid is missing",
                       "record": {"appid": A, "gender": "1"}}  # fmt: skip
    again = runner.invoke(cli, ["ingest", "--profiles", str(src)])
    assert again.output == f"{src}: already ingested (same content), skipped\n"
    missing = runner.invoke(cli, ["ingest", "--profiles", str(tmp_path / "none.csv")])
    assert missing.exit_code != 0 and "no such file" in missing.output


def test_csv_gzip_and_parquet_files(lake: Lake, tmp_path: Path) -> None:
    load(lake, [{"appid": A, "openid": o, "ts": "2024-06-11T08:00:00+08:00"} for o in "abc"])
    csv = tmp_path / "p.csv.gz"
    with gzip.open(csv, "wt", encoding="utf-8") as fh:
        fh.write("openid,appid,gender,updated_at\na,wxprof0000000001,f,1717000000\n")
    assert ingest_profiles_file(lake, csv).accepted == 1
    parquet = tmp_path / "p.parquet"
    ts = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    pq.write_table(
        pa.table({"appid": [A, A], "openid": ["a", "b"], "gender": [1, 2],
                  "birth_date": [dt.date(1990, 1, 1), None], "updated_at": [ts, ts]}),
        parquet,
    )  # fmt: skip
    report = ingest_profiles_file(lake, parquet)
    assert (report.accepted, report.rejected) == (2, 0)
    # a's Parquet record (2024-06-01) is newer than its CSV one (2024-05-29)
    assert genders(lake) == [{"id": 0, "name": "未知", "value": 1},
                             {"id": 1, "name": "男", "value": 1},
                             {"id": 2, "name": "女", "value": 1}]  # fmt: skip
    with pytest.raises(Exception, match="missing required column"):
        ingest_profiles_file(lake, write_ndjson(tmp_path / "x.ndjson", [{"appid": A}]))


async def tok(c: httpx.AsyncClient) -> dict[str, str]:
    res = await c.get(
        "/cgi-bin/token", params={"grant_type": "client_credential", "appid": A, "secret": SECRET}
    )
    return {"access_token": res.json()["access_token"]}


@pytest.mark.anyio
async def test_post_profiles_answers_restates_and_survives_a_restart(settings: Settings) -> None:
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    settings = settings.replace(wechat_limits=False)
    lake = Lake(settings)
    load(lake, [{"appid": A, "openid": o, "ts": "2024-06-11T08:00:00+08:00"} for o in "ab"])
    window = {"begin": "20240610", "end": "20240612"}

    async def gender_rows(c: httpx.AsyncClient, t: dict[str, str]) -> Any:
        res = await c.get(f"/v1/apps/{A}/portrait", params={**window, **t})
        return res.json()["visit_uv"]["genders"]

    async with asgi_client(settings) as c:
        t = await tok(c)
        w = ingest_headers(settings, A)
        assert await gender_rows(c, t) == [{"id": 0, "name": "未知", "value": 2}]  # cached now
        assert (await c.post("/v1/profiles", json=[{"appid": A, "openid": "a"}])).json()[
            "errcode"
        ] == 41001
        res = await c.post("/v1/profiles", params=t, json=[{"appid": A, "openid": "a"}])
        assert res.json()["errcode"] == 48001  # a read token does not write (issue 24)
        body = [
            {"appid": A, "openid": "a", "gender": "m"},
            {"appid": A, "gender": 2},
            {"appid": "wxother", "openid": "b", "gender": 2},
            {"appid": A, "openid": "b", "birth_date": "tomorrow"},
            {"appid": A, "openid": "b", "gender": 2, "updated_at": "9999-01-01"},  # issue 24
        ]
        res = await c.post("/v1/profiles", headers=w, json=body)
        assert res.json() == {
            "errcode": 0, "errmsg": "ok", "accepted": 1,
            "rejected": [
                {"index": 1, "reason": "openid is missing"},
                {"index": 2, "reason": "appid does not match the ingest key's app"},
                {"index": 3, "reason": "birth_date is not a date (YYYY-MM-DD or YYYYMMDD): tomorrow"},
                {"index": 4, "reason": "updated_at is more than a day after the time of ingest: 9999-01-01"},
            ],
        }  # fmt: skip
        # acknowledged = visible: the cached answer of the window is restated
        assert await gender_rows(c, t) == [{"id": 0, "name": "未知", "value": 1},
                                           {"id": 1, "name": "男", "value": 1}]  # fmt: skip
        gz = gzip.compress(b'{"appid": "wxprof0000000001", "openid": "b", "gender": "f"}\n')
        res = await c.post("/v1/profiles", content=gz, headers={**w, "content-encoding": "gzip"})
        assert res.json() == {"errcode": 0, "errmsg": "ok", "accepted": 1, "rejected": []}
        assert (await c.post("/v1/profiles", headers=w, content=b"")).json()["errcode"] == 44002
    async with asgi_client(settings) as c:  # a restart: what was acknowledged is there
        t = await tok(c)
        assert await gender_rows(c, t) == [{"id": 1, "name": "男", "value": 1},
                                           {"id": 2, "name": "女", "value": 1}]  # fmt: skip


def test_files_no_batch_committed_are_removed(lake: Lake, tmp_path: Path) -> None:
    src = write_ndjson(tmp_path / "p.ndjson", [{"appid": A, "openid": "a", "gender": 1}])
    ingest_profiles_file(lake, src)
    (committed,) = lake.catalog.profile_files(A)
    orphan = lake.root / "profiles" / f"appid={A}" / "b99_killed.parquet.tmp"
    orphan.write_bytes(b"half")
    assert lake.collect_garbage() == 1
    assert not orphan.exists() and (lake.root / committed.path).exists()


def test_generate_then_ingest_profiles_by_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERPORTRAIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("USERPORTRAIT_DUCKDB_MEMORY_LIMIT_MB", "512")
    runner = CliRunner()
    events, profiles = tmp_path / "e.parquet", tmp_path / "p.ndjson.gz"
    res = runner.invoke(cli, ["generate", "-q", str(events), "--users", "400", "--days", "6",
                              "--apps", "1", "--end", "20240612", "--profiles", str(profiles)])  # fmt: skip
    assert res.exit_code == 0, res.output
    n = int(res.output.splitlines()[-1].split(": ")[1].split()[0])
    assert runner.invoke(cli, ["ingest", "-q", str(events)]).exit_code == 0
    res = runner.invoke(cli, ["ingest", "--profiles", str(profiles)])
    assert res.output.splitlines()[0] == f"{profiles}: {n} accepted, 0 rejected"
    args = ["portrait", "--appid", "wx0000000000000001", "--begin", "20240607", "--end", "20240612"]
    default = json.loads(runner.invoke(cli, args).output)
    assert default == json.loads(runner.invoke(cli, [*args, "--engine", "reference"]).output)
