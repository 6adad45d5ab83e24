"""Spark (issue 15): the same lake, rejects, state and portraits as the embedded store.

One lake is loaded with ``ingest`` (DuckDB), another with ``spark ingest`` and ``spark
build``, from the same files: generated events with event ids over several appids, then
a late file (events before users' first days, copies of event ids already in the lake
and within the file, equal-timestamp ties with other values, broken records), then a
CSV. Everything Spark wrote must equal what the embedded store wrote.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.conftest import write_ndjson
from tests.fixtures import EVENTS, IP_VISITS, WINDOW_0610_0612, A
from tests.server import asgi_client, token
from tests.spark_support import CLUSTER, CONNECT, LOCAL, SPARK, SparkCluster
from userportrait.cli import cli
from userportrait.engine import get_engine
from userportrait.errors import InputError, InvalidDateRange
from userportrait.ingest.pipeline import IngestReport, ingest_file
from userportrait.ingest.profiles import ingest_profiles_file
from userportrait.portrait.devices import CLIENT_FIELDS
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.expire import expire
from userportrait.store.lake import Lake
from userportrait.store.state import StateStore
from userportrait.synthetic.generate import GeneratorConfig, write_events, write_profiles

pytestmark = SPARK


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test here that runs Spark runs in ``local[2]``, on a standalone cluster and
    through Spark Connect (``spark_master``, tests/spark_support.py), unless it names its
    master itself."""
    named = any(
        m.args[0] == "spark_master" for m in metafunc.definition.iter_markers("parametrize")
    )
    if "spark_master" in metafunc.fixturenames and not named:
        masters = [LOCAL, CLUSTER, CONNECT]
        metafunc.parametrize("spark_master", masters, indirect=True, scope="session")


CONFIG = GeneratorConfig(
    users=900, days=33, end=dt.date(2026, 3, 31), apps=3, seed=23, event_ids=True,
    client_fields=True,  # model/brand/system/user_agent: the device map runs on Spark too
)  # fmt: skip
END, START = CONFIG.end, CONFIG.start
D = dt.timedelta
WINDOWS = [
    (END, END),
    (END - D(6), END),
    (END - D(29), END),
    (END - D(12), END - D(2)),  # 11 days in the middle
    (START - D(4), START + D(1)),  # before the data starts
    (END - D(1), END + D(2)),  # past the end
]


def _epoch_s(ts: Any) -> int:
    if isinstance(ts, str) and ts.isdigit():
        ts = int(ts)
    if isinstance(ts, int):
        return ts // 1000 if ts >= 100_000_000_000 else ts
    text = str(ts).replace("Z", "+00:00")
    return int(dt.datetime.fromisoformat(text).timestamp())


def _late_events(src: Path) -> list[dict[str, Any]]:
    """Late events, duplicate event ids and equal-ts ties, from the generated events."""
    # Without the client fields: a batch that writes no client columns, so both lakes mix
    # files with and without them (docs/storage.md) and every engine reads both kinds.
    rows = [
        {k: v for k, v in json.loads(line).items() if k not in CLIENT_FIELDS}
        for line in src.read_text("utf-8").splitlines()[:4000]
    ]
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows[:1500]):
        if i % 5 == 0:  # 20 days earlier, a new event: the user is no longer new
            ts = _epoch_s(row["ts"]) - 20 * 86400
            out.append({**row, "ts": ts, "event_id": f"late-{i}", "city": "深圳"})
        elif i % 5 == 1:  # a copy of an event already in the lake, other values: dropped
            out.append({**row, "province": "西藏", "device": "Copy Phone"})
        elif i % 5 == 2:  # the same ts, other values, another event: the larger value wins
            tie = {**row, "event_id": f"tie-{i}", "gender": "2", "platform": "ohos"}
            out.append({**tie, "device": "zz tie", "province": "新疆"})
        elif i % 5 == 3:  # two copies inside this file: the first in content order stays
            out.append({**row, "event_id": f"dup-{i}", "age": "41"})
            out.append({**row, "event_id": f"dup-{i}", "age": "19"})
    appid = CONFIG.appids[0]
    out += [
        {"appid": appid, "openid": "", "ts": "2026-03-20T10:00:00+08:00"},
        {"appid": appid, "openid": "x", "ts": "2026-13-01"},
        {"appid": "bad appid", "openid": "x", "ts": 1774000000},
        {"appid": appid, "openid": "x", "ts": True},
        {"appid": appid, "openid": "x", "ts": "2026-03-20", "age": "7.5"},
        {"appid": appid, "openid": "naive", "ts": "2026-03-20 23:59:59", "gender": "女"},
        {"appid": appid, "openid": "epoch-ms", "ts": 1774000000123, "platform": "iPhone"},
    ]
    return out


UA_ANDROID = (
    "Mozilla/5.0 (Linux; Android 12; M2012K11AC Build/SKQ1.220303.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/134.0.6998.136 Mobile Safari/537.36 XWEB/1340129 "
    "MMWEBSDK/20240301 MMWEBID/9871 MicroMessenger/8.0.48.2580(0x28003036) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64 MiniProgramEnv/android"
)


def _write_inputs(root: Path) -> list[Path]:
    base = root / "events.ndjson"
    write_events(base, CONFIG)
    late = write_ndjson(root / "late.ndjson", _late_events(base))
    with late.open("a", encoding="utf-8") as fh:
        fh.write("\nnot json\n[1, 2]\n")
    csv = root / "more.csv"
    csv.write_text(
        "appid,openid,ts,province,city,gender,platform,device,age,model,brand,system,user_agent\n"
        f"{CONFIG.appids[1]},csv-1,2026-03-30T08:00:00Z,广东,广州,1,android,OPPO R9,33,,,,\n"
        f"{CONFIG.appids[1]},,2026-03-30,,,,,,,,,,\n"
        f"{CONFIG.appids[1]},csv-2,yesterday,,,,,,,,,,\n"
        f'{CONFIG.appids[1]},csv-3,"2026-03-29 12:00:00",北京,北京,m,ios,"iPhone 15",,,,,\n'
        f'{CONFIG.appids[1]},csv-4,2026-03-29,,,,,,,"iPhone 13<iPhone14,5>",iPhone,iOS 17.0,\n'
        f'{CONFIG.appids[1]},csv-5,2026-03-29,,,,,,,,,,"{UA_ANDROID}"\n'
        f"{CONFIG.appids[1]},csv-6,2026-03-29,,,,,,,M2012K11AC,Xiaomi,HarmonyOS 4.0.0,\n",
        "utf-8",
    )
    # Issue 17: events with only an ip (the odd forms of tests/ingest/test_ip.py).
    ips = write_ndjson(
        root / "ips.ndjson",
        [
            {"appid": CONFIG.appids[2], "openid": o, "ts": f"2026-03-{20 + i % 10}T09:00:00Z", **f}
            for i, (o, f) in enumerate(IP_VISITS)
        ],
    )
    return [base, late, csv, ips]


# Session scope, not module: the Spark tests of several modules share one xdist worker and
# interleave, and pytest tears module fixtures down whenever the module changes.
class Loaded:
    def __init__(self, lake: Lake, reports: list[IngestReport]) -> None:
        self.lake = lake
        self.reports = reports


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write_inputs(tmp_path_factory.mktemp("spark-inputs"))


@pytest.fixture(scope="session")
def embedded(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    lake = Lake(Settings(data_dir=tmp_path_factory.mktemp("embedded") / "data"))
    return Loaded(lake, [ingest_file(lake, p) for p in inputs])


@pytest.fixture(scope="session")
def on_spark(inputs: list[Path], spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    from userportrait.spark.build import spark_build
    from userportrait.spark.ingest import spark_ingest_file

    lake = Lake(Settings(data_dir=tmp_path_factory.mktemp("on-spark") / "data"))
    reports = [spark_ingest_file(lake, spark, str(p)) for p in inputs]
    manifest = spark_build(lake, spark)
    assert manifest.failed == {} and manifest.version == len(inputs)
    return Loaded(lake, reports)


def _lake_rows(lake: Lake) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    glob = str(lake.events_dir / "*" / "*" / "*.parquet")
    return con.execute(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true) ORDER BY ALL"
    ).fetchall()


def test_spark_ingest_writes_the_same_lake_rows_and_rejects(
    embedded: Loaded, on_spark: Loaded
) -> None:
    for a, b in zip(embedded.reports, on_spark.reports, strict=True):
        assert (b.accepted, b.rejected, b.duplicates) == (a.accepted, a.rejected, a.duplicates)
        assert b.rejects == a.rejects and b.touched == a.touched
        assert a.rejects_file is None or (
            Path(a.rejects_file).read_bytes() == Path(str(b.rejects_file)).read_bytes()
        )
    late = embedded.reports[1]
    assert late.duplicates == 600 and late.rejected == 7  # 300 in the lake + 300 in the file
    assert _lake_rows(on_spark.lake) == _lake_rows(embedded.lake)
    names = sorted(p.name for p in on_spark.lake.events_dir.rglob("*.parquet"))
    assert all(n.startswith("b") and n.endswith("_0.parquet") for n in names)
    assert len(names) == len(on_spark.lake.catalog.files())  # one file per batch and day


def test_spark_build_writes_the_embedded_stores_state(on_spark: Loaded, tmp_path: Path) -> None:
    lake = on_spark.lake
    built = tmp_path / "spark-state"
    shutil.copytree(lake.state_dir, built)
    StateStore(lake).rebuild()  # the embedded store, from scratch, at the same version
    ours = lake.state_dir
    assert (built / "manifest.json").read_text() == (ours / "manifest.json").read_text()
    files = sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    for rel in files:
        a, b = ours / rel, built / rel
        if rel.suffix == ".npz":
            with np.load(a) as za, np.load(b) as zb:
                assert za.files == zb.files, rel
                for k in za.files:
                    assert za[k].dtype == zb[k].dtype and np.array_equal(za[k], zb[k]), (rel, k)
        elif rel.suffix == ".parquet":
            assert pq.read_table(a).equals(pq.read_table(b)), rel
        else:
            assert a.read_bytes() == b.read_bytes(), rel
    shutil.rmtree(ours)
    shutil.copytree(built, ours)  # leave the Spark-built state for the next tests


def _answers(lake: Lake, engine: str, appids: tuple[str, ...] = CONFIG.appids) -> list[Any]:
    eng = get_engine(engine, lake)
    try:
        return [portrait(PortraitQuery(a, b, e), eng) for a in appids for b, e in WINDOWS]
    finally:
        eng.close()


def test_spark_engine_equals_reference_after_late_events(embedded: Loaded, spark: Any) -> None:
    appids = CONFIG.appids[1:]  # the first is in tests/test_engines_agree.py
    assert _answers(embedded.lake, "spark", appids) == _answers(embedded.lake, "reference", appids)


def test_state_built_by_either_is_updated_by_the_other(
    embedded: Loaded, on_spark: Loaded, spark: Any, tmp_path: Path
) -> None:
    from userportrait.spark.build import spark_build
    from userportrait.spark.ingest import spark_ingest_file

    # On copies: the lakes are shared with the tests after this one and the other masters.
    copies = []
    for name, loaded in (("embedded", embedded), ("spark", on_spark)):
        shutil.copytree(loaded.lake.root, tmp_path / name)
        copies.append(Lake(Settings(data_dir=tmp_path / name)))
    embedded_lake, spark_lake = copies
    expected = _answers(embedded_lake, "reference")
    assert _answers(spark_lake, "incremental") == expected  # served from Spark's state
    more = write_ndjson(
        tmp_path / "more.ndjson",
        [
            {"appid": CONFIG.appids[2], "openid": "n1", "ts": "2026-03-31T09:00:00+08:00",
             "province": "上海", "gender": "1", "platform": "mac", "device": "MacBook"},
            {"appid": CONFIG.appids[2], "openid": "n2", "ts": "2026-03-12T09:00:00+08:00",
             "age": "66"},
        ],
    )  # fmt: skip
    ingest_file(spark_lake, more)  # DuckDB updates the state Spark built
    spark_ingest_file(embedded_lake, spark, str(more))  # and Spark the one DuckDB built
    spark_build(embedded_lake, spark)
    for lake in (spark_lake, embedded_lake):
        assert _answers(lake, "incremental") == _answers(lake, "reference")


def test_cli_spark_build_and_portrait(
    on_spark: Loaded, spark_master: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERPORTRAIT_DATA_DIR", str(on_spark.lake.root))
    runner = CliRunner()
    res = runner.invoke(cli, ["spark", "build", "-q", "--spark-master", spark_master])
    assert res.exit_code == 0, res.output
    assert "state at catalog version" in res.output and "3 apps" in res.output
    split = r"  \d+\.\d s: \d+\.\d s in Spark jobs \(executors\), \d+\.\d s on the driver "
    assert re.search(split, res.output), res.output
    args = ["--appid", CONFIG.appids[0], "--begin", "20260320", "--end", "20260326"]
    res = runner.invoke(cli, ["portrait", *args, "--engine", "spark"])
    assert res.exit_code == 0, res.output
    reference = runner.invoke(cli, ["portrait", *args, "--engine", "reference"])
    assert json.loads(res.output) == json.loads(reference.output)


def test_cli_spark_ingest(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERPORTRAIT_DATA_DIR", str(tmp_path / "data"))
    src = write_ndjson(tmp_path / "e.ndjson", EVENTS + [{"appid": A, "openid": "", "ts": 1}])
    runner = CliRunner()
    res = runner.invoke(cli, ["spark", "ingest", "-q", str(src)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[:2] == [
        f"{src}: 10 accepted, 1 rejected",
        f"  rejected {src}:11: openid is missing",
    ]
    assert "state at catalog version 1: 2 apps" in res.output
    args = ["--appid", A, "--begin", "20240610", "--end", "20240612"]
    res = runner.invoke(cli, ["portrait", *args])  # the incremental store, from Spark's state
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == WINDOW_0610_0612
    res = runner.invoke(cli, ["spark", "ingest", "-q", str(src)])
    assert f"{src}: already ingested (same content), skipped" in res.output


def test_without_pyspark_every_spark_command_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from userportrait.spark.session import spark_session

    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(InputError, match=r"pip install 'userportrait\[spark\]'"):
        spark_session(Settings(data_dir=tmp_path))
    monkeypatch.setenv("USERPORTRAIT_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    for args in (["spark", "build"], ["portrait", "--appid", "wxa", "--begin", "20260301",
                 "--end", "20260301", "--engine", "spark"]):  # fmt: skip
        res = runner.invoke(cli, args)
        assert res.exit_code == 1
        assert "pip install 'userportrait[spark]'" in res.output


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_wechat_api_served_by_the_spark_engine(
    api_settings: Settings, spark: Any
) -> None:
    async with asgi_client(api_settings.replace(engine="spark")) as c:
        res = await c.post(
            "/datacube/getweanalysisappiduserportrait",
            params={"access_token": await token(c)},
            content=json.dumps({"begin_date": "20240610", "end_date": "20240612"}),
        )
    assert res.json() == WINDOW_0610_0612


def test_spark_conf_setting() -> None:
    from userportrait.spark.session import parse_conf

    text = "spark.executor.memory=8g; spark.driver.extraJavaOptions=-Da=1 -Db=2;;"
    assert parse_conf(text) == {
        "spark.executor.memory": "8g",
        "spark.driver.extraJavaOptions": "-Da=1 -Db=2",
    }
    with pytest.raises(InputError, match="expected key=value"):
        parse_conf("spark.executor.memory")


def test_the_lake_as_executors_see_it(tmp_path: Path) -> None:
    from userportrait.spark.session import lake_uri

    lake = Lake(Settings(data_dir=tmp_path / "data"))
    assert lake_uri(lake, "events") == (tmp_path / "data" / "events").resolve().as_uri()
    lake = Lake(Settings(data_dir=tmp_path / "data", spark_lake_uri="s3a://bucket/up/"))
    assert lake_uri(lake, lake.staging_dir / "k") == "s3a://bucket/up/_staging/k"
    assert lake_uri(lake) == "s3a://bucket/up"


def test_spark_connect_without_its_client_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    from userportrait.spark import session

    monkeypatch.setattr(session, "_importable", lambda module: module != "grpc")
    with pytest.raises(InputError, match=r"needs grpc; .*pip install 'pyspark\[connect\]'"):
        session.spark_session(Settings(data_dir=tmp_path, spark_master="sc://127.0.0.1:15002"))


#: One malformed row of each kind, between good ones: the same rows kept and the same
#: rejects (file, line, reason, record) from ``ingest`` and ``spark ingest``.
_TS = "2026-03-01T10:00:00+08:00"
MALFORMED_CSV = b"\n".join(
    [
        b"appid,openid,ts,province",
        f"wxa,u1,{_TS},p".encode(),
        f"wxa,u2,{_TS},p,x,y".encode(),  # too many fields
        b"wxa,u3",  # too few
        f"wxa,u\xff4,{_TS},p".encode("latin-1"),  # not UTF-8
        f'wxa,"u5"x,{_TS},p'.encode(),  # text after the closing quote
        f"wxa,u6{'x' * 1000},{_TS},p".encode(),  # over the (lowered) line limit
        f'wxa, "u""7" ,{_TS},p,,'.encode(),  # spaces around quotes, trailing empty fields
        b"",  # a blank line: skipped, but counted
        f'wxa,"u8\nstill u8",{_TS},"a, b"'.encode(),  # a quoted newline: one record
        f"wxa,,{_TS},p".encode(),  # after it: numbered by records, as DuckDB does
        f'wxa,"u10,{_TS},p'.encode(),  # a quote never closed: the rest is its field
        f"wxa,u11,{_TS},p".encode(),
    ]
)
MALFORMED_NDJSON = b"\n".join(
    [
        json.dumps({"appid": "wxa", "openid": "n1", "ts": _TS}).encode(),
        b"not json",
        json.dumps({"appid": "wxa", "openid": "n\xff", "ts": _TS}, ensure_ascii=False).encode(
            "latin-1"
        ),
        b"",
        json.dumps({"appid": "wxa", "openid": "n" * 1000, "ts": _TS}).encode(),
        json.dumps({"appid": "wxa", "openid": "n2", "ts": _TS, "age": [1]}).encode(),
        json.dumps({"appid": "wxa", "openid": "n3", "ts": _TS}).encode(),
    ]
)


def test_malformed_rows_are_rejected_alike(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from userportrait.portrait import rules
    from userportrait.spark.ingest import spark_ingest_file

    monkeypatch.setattr(rules, "MAX_LINE_BYTES", 1000)
    files = {"bad.csv": MALFORMED_CSV, "bad.ndjson": MALFORMED_NDJSON}
    files["bad.csv.gz"] = gzip.compress(MALFORMED_CSV)
    reports: dict[str, IngestReport] = {}
    for name, data in files.items():
        src = tmp_path / name
        src.write_bytes(data)
        embedded = Lake(Settings(data_dir=tmp_path / f"embedded-{name}"))
        on_spark = Lake(Settings(data_dir=tmp_path / f"spark-{name}"))
        a = reports[name] = ingest_file(embedded, src)
        b = spark_ingest_file(on_spark, spark, str(src))
        assert (b.accepted, b.rejected, b.duplicates) == (a.accepted, a.rejected, a.duplicates)
        assert Path(str(b.rejects_file)).read_bytes() == Path(str(a.rejects_file)).read_bytes()
        assert _lake_rows(on_spark) == _lake_rows(embedded)
    assert [(r.line, r.reason) for r in reports["bad.csv"].rejects] == [
        (3, "row has 6 fields; the header has 4"),
        (4, "row has 2 fields; the header has 4"),
        (5, "not valid UTF-8"),
        (6, "a quoted field is not closed"),
        (7, "line is longer than 1000 bytes"),
        (11, "openid is missing"),
        (12, "a quoted field is not closed"),
    ]
    assert reports["bad.csv"].accepted == 3  # u1, u"7, the two-line u8
    assert [(r.line, r.reason) for r in reports["bad.ndjson"].rejects] == [
        (2, "not valid JSON"),
        (3, "not valid UTF-8"),
        (5, "line is longer than 1000 bytes"),
        (6, "age has the wrong type (array)"),
    ]
    assert reports["bad.ndjson"].accepted == 2


def test_after_an_expiry_spark_keeps_first_days_and_the_cut(spark: Any, tmp_path: Path) -> None:
    from userportrait.spark.build import spark_build
    from userportrait.spark.ingest import spark_ingest_file

    lake = Lake(Settings(data_dir=tmp_path / "data"))
    ingest_file(lake, write_ndjson(tmp_path / "e.ndjson", EVENTS))
    expire(lake, dt.date(2024, 6, 10))
    window = PortraitQuery(A, dt.date(2024, 6, 10), dt.date(2024, 6, 12))
    eng = get_engine("spark", lake)
    try:
        assert portrait(window, eng) == WINDOW_0610_0612  # u1 and u3 stay old
        with pytest.raises(InvalidDateRange):
            eng.run_portrait(PortraitQuery(A, dt.date(2024, 6, 9), dt.date(2024, 6, 12)))
    finally:
        eng.close()
    # A state Spark builds anew starts from the kept first days.
    assert spark_build(lake, spark, rebuild=True).failed == {}
    eng = get_engine("incremental", lake)
    try:
        assert portrait(window, eng) == WINDOW_0610_0612
    finally:
        eng.close()
    late = write_ndjson(tmp_path / "late.ndjson", [{**EVENTS[0], "openid": "late"}])
    report = spark_ingest_file(lake, spark, str(late))
    assert [r.reason for r in report.rejects] == [
        "ts is before the retention cut 20240610 of its app: 2024-06-01T10:00:00+08:00"
    ]


def _profile_rows(lake: Lake) -> list[tuple[Any, ...]]:
    paths = [str(lake.root / f.path) for a in CONFIG.appids for f in lake.catalog.profile_files(a)]
    paths += [str(lake.root / f.path) for f in lake.catalog.profile_files("wxa")]
    return (
        duckdb.connect().execute(f"SELECT * FROM read_parquet({paths!r}) ORDER BY ALL").fetchall()
    )


def test_spark_ingest_profiles_checks_as_ingest_profiles(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``spark ingest --profiles`` (issue 29): the same profiles, rejects and rejects files
    as ``ingest --profiles``, for NDJSON with broken records, gzipped CSV and typed Parquet."""
    from userportrait.spark.profiles import spark_ingest_profiles_file

    now = int(dt.datetime(2026, 4, 1, 12, tzinfo=dt.UTC).timestamp() * 1_000_000)
    generated = tmp_path / "generated.ndjson"
    write_profiles(generated, CONFIG)
    broken = [
        json.dumps({"appid": "wxa", "openid": "a", "gender": "女", "birth_date": "1990-01-02"}),
        json.dumps({"appid": "wxa", "gender": 1}),
        "{not json",
        json.dumps({"appid": "wxa", "openid": "b", "birth_date": "1990-13-01"}),
        "",
        json.dumps({"appid": "wxa", "openid": "c", "updated_at": "soon"}),
        json.dumps({"appid": "wxa", "openid": "d", "birth_year": 1985, "city": "广州"}),
        json.dumps({"appid": "wxa", "openid": "e", "birth_date": 19900304, "province": ["x"]}),
        json.dumps({"appid": "wxa", "openid": "f", "birth_year": "2030"}),
        json.dumps({"appid": "wxa", "openid": "g", "updated_at": "9999-01-01"}),
    ]
    (tmp_path / "broken.ndjson").write_text("\n".join(broken) + "\n", "utf-8")
    with gzip.open(tmp_path / "p.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write("openid,appid,gender,updated_at\na,wxa,f,1717000000\nb,wxa,m,x,y\n,wxa,,\n")
    ts = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    pq.write_table(
        pa.table({"appid": ["wxa", "wxa"], "openid": ["a", "h"], "gender": [1, 2],
                  "birth_date": [dt.date(1990, 1, 1), None], "updated_at": [ts, ts]}),
        tmp_path / "p.parquet",
    )  # fmt: skip
    names = ["generated.ndjson", "broken.ndjson", "p.csv.gz", "p.parquet"]
    embedded = Lake(Settings(data_dir=tmp_path / "embedded"))
    on_spark = Lake(Settings(data_dir=tmp_path / "spark"))
    for name in names:
        a = ingest_profiles_file(embedded, tmp_path / name, now)
        b = spark_ingest_profiles_file(on_spark, spark, str(tmp_path / name), now)
        assert (b.accepted, b.rejected, b.batch_id) == (a.accepted, a.rejected, a.batch_id), name
        assert b.rejects == a.rejects, name
        assert a.rejects_file is None or (
            Path(a.rejects_file).read_bytes() == Path(str(b.rejects_file)).read_bytes()
        )
    assert [r.line for r in ingest_profiles_file(Lake(Settings(data_dir=tmp_path / "x")),
            tmp_path / "broken.ndjson", now).rejects] == [2, 3, 4, 6, 8, 9, 10]  # fmt: skip
    assert _profile_rows(on_spark) == _profile_rows(embedded)
    # The command: skips what it loaded, builds nothing (no day changed).
    monkeypatch.setenv("USERPORTRAIT_DATA_DIR", str(on_spark.root))
    res = CliRunner().invoke(cli, ["spark", "ingest", "-q", "--profiles", str(tmp_path / names[1])])
    assert res.exit_code == 0, res.output
    assert res.output == f"{tmp_path / names[1]}: already ingested (same content), skipped\n"


def test_a_failed_spark_job_commits_nothing(spark: Any, tmp_path: Path) -> None:
    """A job that fails mid-ingest (here: Parquet whose footer reads but whose pages are
    broken, found by the executors) says so, and the catalog and the lake are as before."""
    from userportrait.spark.ingest import spark_ingest_file

    lake = Lake(Settings(data_dir=tmp_path / "data"))
    bad = tmp_path / "bad.parquet"
    n = 5000
    table = pa.table({"appid": ["wxa"] * n, "openid": [f"u{i}" for i in range(n)], "ts": [_TS] * n})
    pq.write_table(table, bad, compression="snappy")
    data = bytearray(bad.read_bytes())
    data[60 : len(data) // 2] = b"\xff" * (len(data) // 2 - 60)  # the pages, not the footer
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"bad\.parquet: the Spark job failed; nothing was "
                       r"committed \(is it readable as parquet\?\)"):  # fmt: skip
        spark_ingest_file(lake, spark, str(bad))
    assert lake.catalog.version() == 0
    assert not list(lake.events_dir.rglob("*.parquet"))


def test_the_cluster_runs_the_jobs(spark: Any, spark_master: str) -> None:
    """The ``cluster`` cases really run on the standalone workers, not in this JVM; the
    ``connect`` ones in the server's."""
    if spark_master.startswith("sc://"):
        assert type(spark).__module__ == "pyspark.sql.connect.session"
        zones = spark.range(0, 4, 1, 4).selectExpr("reflect('java.lang.System', 'getenv', 'TZ')")
        assert {r[0] for r in zones.collect()} == {"America/Sao_Paulo"}
        return
    sc = spark.sparkContext
    assert sc.master == spark_master
    if spark_master.startswith("spark://"):
        deadline = time.monotonic() + 60  # executors register a moment after the session
        while sc._jsc.sc().getExecutorMemoryStatus().size() < 3:  # the driver's counts too
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # The tasks run in the workers' executors, whose zone is not the driver's.
        zones = spark.range(0, 4, 1, 4).selectExpr("reflect('java.lang.System', 'getenv', 'TZ')")
        assert {r[0] for r in zones.collect()} == {"America/Sao_Paulo"}


@pytest.mark.parametrize("spark_master", [CLUSTER], indirect=True, scope="session")
def test_a_worker_killed_mid_ingest(
    spark: Any,
    spark_cluster: SparkCluster,
    inputs: list[Path],
    tmp_path: Path,
) -> None:
    """Spark reruns the lost tasks on the other worker: the same lake as ``ingest``'s, or,
    if the job fails, a clear error and nothing committed."""
    from userportrait.spark.ingest import spark_ingest_file

    lake = Lake(Settings(data_dir=tmp_path / "data"))
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["report"] = spark_ingest_file(lake, spark, str(inputs[0]))
        except Exception as exc:  # checked below, on the test's thread
            result["error"] = exc

    tracker = spark.sparkContext.statusTracker()
    job = threading.Thread(target=run)
    job.start()
    try:
        deadline = time.monotonic() + 120
        while not tracker.getActiveStageIds() and job.is_alive():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert job.is_alive()  # killed mid-job
        spark_cluster.kill("worker1")
        job.join(timeout=600)
        assert not job.is_alive()
    finally:
        spark_cluster.add_worker()  # two workers again for the tests after this one
        spark_cluster.wait_for_workers(2)
    if "error" in result:
        assert isinstance(result["error"], InputError), result["error"]
        assert "the Spark job failed; nothing was committed" in str(result["error"])
        assert lake.catalog.version() == 0
        assert not list(lake.events_dir.rglob("*.parquet"))
        return
    embedded = Lake(Settings(data_dir=tmp_path / "embedded"))
    expected = ingest_file(embedded, inputs[0])
    assert result["report"].accepted == expected.accepted
    assert _lake_rows(lake) == _lake_rows(embedded)
