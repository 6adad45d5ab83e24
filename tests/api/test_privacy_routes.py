"""A protected app's answers on every route and the CLI (issue 16); off is byte-identical."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.fixtures import A
from tests.server import CLOUD, PATH, asgi_client, assert_error, token
from userportrait.cli import cli
from userportrait.portrait.export import portrait_csv
from userportrait.portrait.result import to_cloud
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
WEEK = {"begin_date": "20240606", "end_date": "20240612"}
NATIVE = f"/v1/apps/{A}/portrait"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def threshold(settings: Settings, *args: str) -> None:
    res = CliRunner().invoke(
        cli, ["apps", "threshold", "--appid", A, *args, "--data-dir", str(settings.data_dir)]
    )
    assert res.exit_code == 0, res.output


def cli_portrait(settings: Settings, *extra: str) -> str:
    res = CliRunner().invoke(cli, ["portrait", "--appid", A, "--begin", "20240606", "--end",
                                   "20240612", "--data-dir", str(settings.data_dir), *extra])  # fmt: skip
    assert res.exit_code == 0, res.output
    return res.output


async def answers(settings: Settings) -> tuple[bytes, bytes, bytes, bytes]:
    async with asgi_client(settings) as c:
        t = await token(c)
        wechat = await c.post(PATH, params={"access_token": t}, json=WEEK)
        cloud = await c.post(CLOUD, params={"access_token": t},
                             json={"beginDate": "20240606", "endDate": "20240612"})  # fmt: skip
        window = {"begin": "20240606", "end": "20240612", "access_token": t}
        native = await c.get(NATIVE, params=window)
        csv = await c.get(NATIVE, params={**window, "format": "csv"})
        return wechat.content, cloud.content, native.content, csv.content


async def test_every_route_folds_and_off_is_byte_identical(api_settings: Settings) -> None:
    before = await answers(api_settings)
    cli_before = cli_portrait(api_settings)
    threshold(api_settings, "--k", "2")
    wechat, cloud, native, csv = await answers(api_settings)
    body = json.loads(wechat)
    # 4 active users in the week. Ages: 17岁以下 (1) and 30-39岁 (1) fold together.
    assert body["visit_uv"]["ages"] == [
        {"id": 0, "name": "未知", "value": 2}, {"id": 99, "name": "其他", "value": 2}
    ]  # fmt: skip
    assert body["visit_uv"]["genders"] == json.loads(before[0])["visit_uv"]["genders"]  # all >= 2
    # Province: 未知 (1) is below k and 广东 (3) is the only row to fold with: both go.
    assert body["visit_uv"]["province"] == [{"id": 99, "name": "其他", "value": 4}]
    assert body["visit_uv_new"]["genders"] == [{"id": 99, "name": "其他", "value": 3}]
    assert json.loads(cloud) == to_cloud(body)
    assert json.loads(native) == body
    assert csv.decode() == portrait_csv(body)
    assert json.loads(cli_portrait(api_settings)) == body
    assert cli_portrait(api_settings, "--raw") == cli_before  # --raw: the exact rows
    threshold(api_settings, "--off")
    assert await answers(api_settings) == before
    assert cli_portrait(api_settings) == cli_before


async def test_protected_app_refuses_other_windows(api_settings: Settings) -> None:
    threshold(api_settings, "--k", "5")
    async with asgi_client(api_settings) as c:
        t = await token(c)
        res = await c.post(PATH, params={"access_token": t},
                           json={"begin_date": "20240610", "end_date": "20240612"})  # fmt: skip
        assert_error(res, 61501, "date range error: span is 3 days; allowed 1, 7 or 30 (the app")
        res = await c.get(NATIVE, params={"begin": "20240610", "end": "20240612",
                                          "access_token": t})  # fmt: skip
        assert_error(res, 61501, "date range error: span is 3 days")
    out = CliRunner().invoke(cli, ["portrait", "--appid", A, "--begin", "20240610", "--end",
                                   "20240612", "--data-dir", str(api_settings.data_dir)])  # fmt: skip
    assert out.exit_code == 1 and "small-count threshold" in out.output


def test_threshold_command_checks_its_arguments(tmp_path: object) -> None:
    runner = CliRunner()
    for args in (["--appid", A], ["--appid", A, "--k", "5", "--off"], ["--appid", A, "--k", "1"]):
        res = runner.invoke(cli, ["apps", "threshold", *args, "--data-dir", str(tmp_path)])
        assert res.exit_code == 1, res.output
