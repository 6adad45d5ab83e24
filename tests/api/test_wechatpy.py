"""wechatpy, unchanged but for its base URL, against the real server (uvicorn on port 0)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from tests.fixtures import WINDOW_0610_0612, A
from tests.server import BODY, PATH, SECRET, RealServer, live_server
from userportrait.auth.store import AuthStore
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import today_shanghai
from userportrait.settings import Settings
from userportrait.store.lake import Lake
from userportrait.synthetic.generate import GeneratorConfig, write_events

ENDPOINT = PATH.lstrip("/")  # wechatpy joins endpoints onto its base URL


def pointed(base_url: str, appid: str, secret: str, **kwargs: Any) -> WeChatClient:
    """wechatpy's WeChatClient with its two hard-coded URLs moved to ``base_url``."""

    class Pointed(WeChatClient):  # type: ignore[misc]
        API_BASE_URL = base_url + "/"

        def fetch_access_token(self) -> Any:
            params = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
            return self._fetch_access_token(url=base_url + "/cgi-bin/token", params=params)

    return Pointed(appid, secret, **kwargs)


def cli_portrait(data_dir: Path, appid: str, begin: str, end: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "userportrait", "portrait", "--appid", appid, "--begin", begin,
         "--end", end, "--data-dir", str(data_dir), "--format", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def test_wechatpy_gets_the_cli_answer(real_server: RealServer) -> None:
    client = pointed(real_server.url, A, SECRET)
    body = client.post(ENDPOINT, data=BODY)
    assert client.access_token and len(client.access_token) >= 64
    expected = cli_portrait(real_server.settings.data_dir, A, "20240610", "20240612")
    assert body == expected == WINDOW_0610_0612
    dashed = client.post(ENDPOINT, data={"begin_date": "2024-06-10", "end_date": "2024-06-12"})
    assert dashed == WINDOW_0610_0612


@pytest.mark.parametrize(
    ("data", "errcode"),
    [({"begin_date": "2024061", "end_date": "20240612"}, 61500),
     ({"begin_date": "20240612", "end_date": "20240611"}, 61501),
     ({"begin_date": "20240610"}, 47001)],
)  # fmt: skip
def test_wechatpy_sees_wechat_errors(real_server: RealServer, data: Any, errcode: int) -> None:
    client = pointed(real_server.url, A, SECRET)
    with pytest.raises(WeChatClientException) as info:
        client.post(ENDPOINT, data=data)
    assert info.value.errcode == errcode
    assert " rid: " in info.value.errmsg


def test_wechatpy_invalid_token_and_secret(real_server: RealServer) -> None:
    bad = pointed(real_server.url, A, SECRET, access_token="not-a-token", auto_retry=False)
    with pytest.raises(WeChatClientException) as info:
        bad.post(ENDPOINT, data=BODY)
    assert info.value.errcode == 40001
    # with auto_retry (the default) wechatpy fetches a new token on 40001 and succeeds
    retried = pointed(real_server.url, A, SECRET, access_token="not-a-token")
    assert retried.post(ENDPOINT, data=BODY) == WINDOW_0610_0612
    with pytest.raises(WeChatClientException) as info:
        pointed(real_server.url, A, "wrong-secret").fetch_access_token()
    assert info.value.errcode == 40125


def test_wechatpy_with_wechat_limits_on(tmp_path: Path) -> None:
    """Generated data ending yesterday (Asia/Shanghai); the default limits stay on."""
    yesterday = today_shanghai() - dt.timedelta(days=1)
    settings = Settings(data_dir=tmp_path / "data", duckdb_memory_limit_mb=512)
    cfg = GeneratorConfig(users=300, days=10, end=yesterday, apps=1, visits_per_user=3.0)
    events = tmp_path / "events.parquet"
    write_events(events, cfg)
    ingest_file(Lake(settings), events)
    appid = cfg.appids[0]
    AuthStore(settings.data_dir / "meta.sqlite").add_app(appid, SECRET)
    begin = yesterday - dt.timedelta(days=6)
    window = {"begin_date": f"{begin:%Y%m%d}", "end_date": f"{yesterday:%Y%m%d}"}
    with live_server(settings) as url:
        client = pointed(url, appid, SECRET)
        body = client.post(ENDPOINT, data=window)
        assert body == cli_portrait(settings.data_dir, appid, *window.values())
        assert sum(r["value"] for r in body["visit_uv"]["genders"]) > 0
        for data in ({**window, "begin_date": f"{begin + dt.timedelta(days=1):%Y%m%d}"},
                     {"begin_date": f"{yesterday + dt.timedelta(days=1):%Y%m%d}",
                      "end_date": f"{yesterday + dt.timedelta(days=1):%Y%m%d}"}):  # fmt: skip
            with pytest.raises(WeChatClientException) as info:
                client.post(ENDPOINT, data=data)
            assert info.value.errcode == 61501
