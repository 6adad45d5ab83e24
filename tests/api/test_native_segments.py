"""The native portrait's compare, filter and by (issue 27), exact JSON on tests/fixtures.py.

In 06-10..06-12: u1 (广东 深圳, gender 未知, Android, no device, 30-39岁; first seen 06-01),
u2 (广东 广州, 女, HarmonyOS, vivo X27, 17岁以下; new), u3 (未知 everywhere but Windows;
first seen 06-09) and u5 (其他 platform; new). In 06-07..06-09 only u3 (广东, 女; new).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fixtures import A
from tests.server import asgi_client, assert_error, token
from userportrait.cli import cli
from userportrait.portrait.export import portrait_csv
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
PORTRAIT = f"/v1/apps/{A}/portrait"
WINDOW = [("begin", "20240610"), ("end", "20240612")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def r(i: int, name: str, value: int, previous: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"id": i, "name": name, "value": value}
    if previous is not None:
        row["previous"] = previous
    return row


def d(name: str, value: int, previous: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "value": value}
    if previous is not None:
        row["previous"] = previous
    return row


COMPARED: dict[str, Any] = {
    "ref_date": "20240610-20240612",
    "visit_uv_new": {
        "province": [r(0, "未知", 1, 0), r(44, "广东省", 1, 1)],
        "city": [r(0, "未知", 1, 1), r(4401, "广州", 1, 0)],
        "genders": [r(0, "未知", 1, 0), r(2, "女", 1, 1)],
        "platforms": [r(3, "HarmonyOS", 1, 0), r(6, "其他", 1, 0)],
        "devices": [d("vivo X27", 1, 0), d("未知", 1, 1)],
        "ages": [r(0, "未知", 1, 1), r(1, "17岁以下", 1, 0)],
    },
    "visit_uv": {
        "province": [r(0, "未知", 2, 0), r(44, "广东省", 2, 1)],
        "city": [r(0, "未知", 2, 1), r(4401, "广州", 1, 0), r(4403, "深圳", 1, 0)],
        "genders": [r(0, "未知", 3, 0), r(2, "女", 1, 1)],
        "platforms": [r(2, "Android", 1, 0), r(3, "HarmonyOS", 1, 0), r(4, "Windows", 1, 0),
                      r(6, "其他", 1, 0)],
        "devices": [d("未知", 3, 1), d("vivo X27", 1, 0)],
        "ages": [r(0, "未知", 2, 1), r(1, "17岁以下", 1, 0), r(4, "30-39岁", 1, 0)],
    },
    "previous_ref_date": "20240607-20240609",
    "totals": {"visit_uv": {"value": 4, "previous": 1},
               "visit_uv_new": {"value": 2, "previous": 1}},
}  # fmt: skip

GUANGDONG: dict[str, Any] = {
    "ref_date": "20240610-20240612",
    "visit_uv_new": {
        "province": [r(44, "广东省", 1)],
        "city": [r(4401, "广州", 1)],
        "genders": [r(2, "女", 1)],
        "platforms": [r(3, "HarmonyOS", 1)],
        "devices": [d("vivo X27", 1)],
        "ages": [r(1, "17岁以下", 1)],
    },
    "visit_uv": {
        "province": [r(44, "广东省", 2)],
        "city": [r(4401, "广州", 1), r(4403, "深圳", 1)],
        "genders": [r(0, "未知", 1), r(2, "女", 1)],
        "platforms": [r(2, "Android", 1), r(3, "HarmonyOS", 1)],
        "devices": [d("vivo X27", 1), d("未知", 1)],
        "ages": [r(1, "17岁以下", 1), r(4, "30-39岁", 1)],
    },
}


def key(i: int, name: str) -> dict[str, Any]:
    return {"id": i, "name": name}


GENDERS_AGES: dict[str, Any] = {
    "ref_date": "20240610-20240612",
    "by": ["genders", "ages"],
    "visit_uv_new": [
        {"keys": [key(0, "未知"), key(0, "未知")], "value": 1},
        {"keys": [key(2, "女"), key(1, "17岁以下")], "value": 1},
    ],
    "visit_uv": [
        {"keys": [key(0, "未知"), key(0, "未知")], "value": 2},
        {"keys": [key(0, "未知"), key(4, "30-39岁")], "value": 1},
        {"keys": [key(2, "女"), key(1, "17岁以下")], "value": 1},
    ],
}


async def get(api_settings: Settings, params: list[tuple[str, str]]) -> Any:
    async with asgi_client(api_settings) as c:
        t = await token(c)
        return await c.get(PORTRAIT, params=[*WINDOW, *params, ("access_token", t)])


async def test_compare_previous(api_settings: Settings) -> None:
    res = await get(api_settings, [("compare", "previous")])
    assert res.json() == COMPARED


async def test_filter(api_settings: Settings) -> None:
    assert (await get(api_settings, [("filter", "province=44")])).json() == GUANGDONG
    # AND: the 广东 users with no gender: u1 alone, old.
    both = (await get(api_settings, [("filter", "province=44"), ("filter", "genders=0")])).json()
    assert both["visit_uv"]["devices"] == [d("未知", 1)] and both["visit_uv_new"]["city"] == []
    # devices by name (URL-encoded by httpx); 未知 is the users without one.
    vivo = (await get(api_settings, [("filter", "devices=vivo X27")])).json()
    assert vivo["visit_uv"]["province"] == [r(44, "广东省", 1)]
    none = (await get(api_settings, [("filter", "devices=未知")])).json()
    assert none["visit_uv"]["genders"] == [r(0, "未知", 3)]
    # A value the window does not have: an empty portrait, not an error (no threshold).
    empty = (await get(api_settings, [("filter", "province=11")])).json()
    assert all(rows == [] for rows in empty["visit_uv"].values())


async def test_filter_with_compare(api_settings: Settings) -> None:
    body = (await get(api_settings, [("filter", "genders=2"), ("compare", "previous")])).json()
    assert body["visit_uv"]["province"] == [r(44, "广东省", 1, 1)]
    assert body["visit_uv_new"]["genders"] == [r(2, "女", 1, 1)]
    assert body["totals"] == {"visit_uv": {"value": 1, "previous": 1},
                              "visit_uv_new": {"value": 1, "previous": 1}}  # fmt: skip


async def test_by(api_settings: Settings) -> None:
    assert (await get(api_settings, [("by", "genders,ages")])).json() == GENDERS_AGES
    devices = (await get(api_settings, [("by", "devices,platforms")])).json()
    assert devices["visit_uv"] == [
        {"keys": [{"name": "vivo X27"}, key(3, "HarmonyOS")], "value": 1},
        {"keys": [{"name": "未知"}, key(2, "Android")], "value": 1},
        {"keys": [{"name": "未知"}, key(4, "Windows")], "value": 1},
        {"keys": [{"name": "未知"}, key(6, "其他")], "value": 1},
    ]
    guangdong = await get(api_settings, [("by", "city,genders"), ("filter", "province=44")])
    assert guangdong.json()["visit_uv"] == [
        {"keys": [key(4401, "广州"), key(2, "女")], "value": 1},
        {"keys": [key(4403, "深圳"), key(0, "未知")], "value": 1},
    ]
    compared = (await get(api_settings, [("by", "genders,ages"), ("compare", "previous")])).json()
    assert compared["visit_uv"][0] == {"keys": [key(0, "未知"), key(0, "未知")], "value": 2,
                                       "previous": 0}  # fmt: skip
    assert compared["totals"]["visit_uv"] == {"value": 4, "previous": 1}


async def test_csv(api_settings: Settings) -> None:
    res = await get(api_settings, [("compare", "previous"), ("format", "csv")])
    assert res.text == portrait_csv(COMPARED)
    lines = res.text.splitlines()
    assert lines[0] == "ref_date,audience,dimension,id,name,value,previous"
    assert "20240610-20240612,visit_uv,province,44,广东省,2,1" in lines
    cross = await get(api_settings, [("by", "genders,ages"), ("format", "csv")])
    assert cross.text == (
        "audience,genders_id,genders_name,ages_id,ages_name,value\n"
        "visit_uv_new,0,未知,0,未知,1\n"
        "visit_uv_new,2,女,1,17岁以下,1\n"
        "visit_uv,0,未知,0,未知,2\n"
        "visit_uv,0,未知,4,30-39岁,1\n"
        "visit_uv,2,女,1,17岁以下,1\n"
    )


@pytest.mark.parametrize(
    ("params", "errmsg"),
    [
        ([("filter", "province")], "invalid args: filter 'province' is not DIM=ID"),
        ([("filter", "country=1")], "invalid args: filter dimension 'country' is not one of"),
        ([("filter", "province=1")], "invalid args: filter province=1: no such province id"),
        ([("filter", "genders=99")], "invalid args: filter genders=99: no such genders id"),
        ([("filter", "ages=x")], "invalid args: filter ages='x': the id must be a number"),
        ([("filter", "devices=")], "invalid args: filter devices= takes a model name"),
        ([("filter", "genders=1"), ("filter", "genders=2")], "invalid args: filter on genders"),
        ([("by", "genders")], "invalid args: by 'genders' is not two dimensions DIM,DIM"),
        ([("by", "ages,ages")], "invalid args: by names ages twice"),
        ([("by", "ages,sex")], "invalid args: by dimension 'sex' is not one of"),
        ([("compare", "next")], "invalid args: compare 'next': the only comparison is"),
    ],
)
async def test_bad_parameters_are_40097(
    api_settings: Settings, params: list[tuple[str, str]], errmsg: str
) -> None:
    assert_error(await get(api_settings, params), 40097, errmsg)


def threshold(settings: Settings, k: int) -> None:
    res = CliRunner().invoke(cli, ["apps", "threshold", "--appid", A, "--k", str(k),
                                   "--data-dir", str(settings.data_dir)])  # fmt: skip
    assert res.exit_code == 0, res.output


async def test_a_small_segment_is_refused_under_the_threshold(api_settings: Settings) -> None:
    threshold(api_settings, 2)
    week = [("begin", "20240606"), ("end", "20240612")]
    async with asgi_client(api_settings) as c:
        t = await token(c)

        async def ask(*params: tuple[str, str]) -> Any:
            return await c.get(PORTRAIT, params=[*week, *params, ("access_token", t)])

        # 广东 has 3 users in the week: answered, folded like every protected answer.
        body = (await ask(("filter", "province=44"))).json()
        # 未知 (u1) is below k and 女 (u2, u3) the only row to hide it with: both fold.
        assert body["visit_uv"]["genders"] == [r(99, "其他", 3)]
        assert body["visit_uv"]["province"] == [r(99, "其他", 3)]
        # No province: u5 alone, below k.
        assert_error(
            await ask(("filter", "province=0")),
            61502,
            "segment too small: the segment province=0 has fewer than 2 active users in "
            "20240606-20240612 (the app's small-count threshold); widen it",
        )
        # The week before holds u1 only: comparing 广东 with it is refused as well.
        assert_error(
            await ask(("filter", "province=44"), ("compare", "previous")),
            61502,
            "segment too small: the segment province=44 has fewer than 2 active users in "
            "20240530-20240605",
        )
        # A cross-tab folds its small cells into one 其他 cell.
        cross = (await ask(("by", "genders,ages"))).json()
        assert cross["visit_uv"] == [{"keys": [key(99, "其他"), key(99, "其他")], "value": 4}]
        # Totals below k are withheld.
        compared = (await ask(("compare", "previous"))).json()
        assert compared["totals"] == {"visit_uv": {"value": 4, "previous": None},
                                      "visit_uv_new": {"value": 3, "previous": None}}  # fmt: skip


def test_cli_takes_the_same(api_settings: Settings) -> None:
    base = ["portrait", "--appid", A, "--begin", "20240610", "--end", "20240612",
            "--data-dir", str(api_settings.data_dir)]  # fmt: skip
    runner = CliRunner()
    out = runner.invoke(cli, [*base, "--compare", "previous"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == COMPARED
    out = runner.invoke(cli, [*base, "--filter", "province=44"])
    assert json.loads(out.output) == GUANGDONG
    out = runner.invoke(cli, [*base, "--by", "genders,ages"])
    assert json.loads(out.output) == GENDERS_AGES
    out = runner.invoke(cli, [*base, "--by", "genders,ages", "--format", "csv"])
    assert out.output.splitlines()[0] == "audience,genders_id,genders_name,ages_id,ages_name,value"
    table = runner.invoke(cli, [*base, "--compare", "previous", "--format", "table"])
    assert (
        table.exit_code == 0 and "20240607-20240609" in table.output and "▲+100.0%" in table.output
    )
    cross = runner.invoke(cli, [*base, "--by", "genders,ages", "--format", "table"])
    assert cross.exit_code == 0 and "30-39岁" in cross.output
    bad = runner.invoke(cli, [*base, "--filter", "province=1"])
    assert bad.exit_code == 1 and "filter province=1: no such province id" in bad.output


async def test_compare_needs_the_window_before_kept(api_settings: Settings) -> None:
    res = CliRunner().invoke(cli, ["expire", "--before", "20240607", "--appid", A,
                                   "--data-dir", str(api_settings.data_dir)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (await get(api_settings, [("compare", "previous")])).json()["totals"] == {
        "visit_uv": {"value": 4, "previous": 1}, "visit_uv_new": {"value": 2, "previous": 1}
    }  # fmt: skip
    async with asgi_client(api_settings) as c:
        t = await token(c)
        res = await c.get(PORTRAIT, params=[("begin", "20240609"), ("end", "20240612"),
                                            ("compare", "previous"), ("access_token", t)])  # fmt: skip
        assert_error(res, 61501, "date range error")


async def test_previous_ref_date_is_a_range_for_one_day_too(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        t = await token(c)
        res = await c.get(PORTRAIT, params=[("begin", "20240611"), ("end", "20240611"),
                                            ("compare", "previous"), ("access_token", t)])  # fmt: skip
        body = res.json()
        assert (body["ref_date"], body["previous_ref_date"]) == ("20240611", "20240610-20240610")
        # 06-11: u1 and u5 (new); 06-10: u1, u2 (new) and u3.
        assert body["totals"] == {"visit_uv": {"value": 2, "previous": 3},
                                  "visit_uv_new": {"value": 1, "previous": 1}}  # fmt: skip
