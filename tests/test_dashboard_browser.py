"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

``scripts/install --dev`` installs the browser (``apt-get install chromium``); Playwright
never downloads one. Every page gets a route guard that fails the test on any request to a
host other than the server (the dashboard and /docs must work offline). Screenshots at
laptop and phone width go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.server import live_server
from userportrait.auth.store import AuthStore
from userportrait.cli import cli
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.export import csv_cell
from userportrait.portrait.query import today_shanghai
from userportrait.settings import Settings
from userportrait.store.lake import Lake
from userportrait.synthetic.generate import GeneratorConfig, write_events

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium tries Google's services and, on a closed
# network, stalls; --headless etc. as the issue prescribes.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
APP, SECRET = "wx0000000000000001", "browser-secret"
DIMS = ("province", "city", "genders", "platforms", "devices", "ages")
CHARTS = ("chart-trend", "chart-province", "chart-city", "chart-ages", "chart-genders",
          "chart-platforms", "chart-devices")  # fmt: skip
FORMULA_DEVICES = ('=HYPERLINK("http://evil.example/","x")', "+cmd|' /C calc'!A0",
                   "-2+3", "@SUM(1+1)")  # fmt: skip
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Dash:
    url: str
    settings: Settings
    token: str
    foreign: list[str] = field(default_factory=list)

    def portrait(
        self, begin: dt.date, end: dt.date, appid: str = APP, *extra: tuple[str, str]
    ) -> dict[str, Any]:
        """The native API's answer; ``extra``: ("compare", "previous"), ("filter", "DIM=ID")…"""
        params = [("begin", f"{begin:%Y%m%d}"), ("end", f"{end:%Y%m%d}"), *extra]
        res = httpx.get(
            f"{self.url}/v1/apps/{appid}/portrait", params=[*params, ("access_token", self.token)]
        )
        body: dict[str, Any] = res.json()
        assert "visit_uv" in body, body
        return body

    def link(self) -> str:
        out = CliRunner().invoke(
            cli,
            [
                "dashboard",
                "link",
                "--appid",
                APP,
                "--base-url",
                self.url,
                "--data-dir",
                str(self.settings.data_dir),
            ],  # fmt: skip
            catch_exceptions=False,
        )
        assert out.exit_code == 0, out.output
        return out.output.strip()


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    root = tmp_path_factory.mktemp("dashboard")
    settings = Settings(data_dir=root / "data", duckdb_memory_limit_mb=512)
    yesterday = today_shanghai() - dt.timedelta(days=1)
    events = root / "events.parquet"
    write_events(events, GeneratorConfig(users=3000, days=40, end=yesterday, apps=2, seed=3))
    ingest_file(Lake(settings), events)
    # Device names a spreadsheet would run (issue 24), many users each: in the top 20.
    formulas = root / "formulas.ndjson"
    formulas.write_text("".join(
        json.dumps({"appid": APP, "openid": f"formula{i}-{n}", "ts": f"{yesterday}T10:00:00+08:00",
                    "device": device}) + "\n"
        for i, device in enumerate(FORMULA_DEVICES) for n in range(400 - 50 * i)
    ), "utf-8")  # fmt: skip
    assert ingest_file(Lake(settings), formulas).rejected == 0
    AuthStore(settings.data_dir / "meta.sqlite").add_app(APP, SECRET)
    with live_server(settings) as url:
        res = httpx.get(f"{url}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": APP, "secret": SECRET})  # fmt: skip
        yield Dash(url, settings, res.json()["access_token"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def new_page(browser: Browser, dash: Dash, viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    here = urlsplit(dash.url).netloc

    def guard(route: Route) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("http", "https") and parts.netloc != here:
            dash.foreign.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e} {e.stack}"))
    page.set_default_timeout(15_000)
    page.errors = errors  # type: ignore[attr-defined]
    return page


@pytest.fixture(autouse=True)
def only_this_server(dash: Dash) -> Iterator[None]:
    yield
    assert dash.foreign == [], "requests to other hosts"


def wait_ready(page: Page, state: str = "ready") -> None:
    page.wait_for_selector(f"#status[data-state={state}]", state="attached")


def sign_in_by_form(page: Page, dash: Dash) -> None:
    page.goto(dash.url + "/")
    page.fill("#signin-appid", APP)
    page.fill("#signin-secret", SECRET)
    page.click("#signin-app button[type=submit]")
    wait_ready(page)


def merged(body: dict[str, Any], dim: str) -> dict[str, tuple[int, int]]:
    """name -> (new, active), as the index table shows them."""
    out = {r["name"]: (0, r["value"]) for r in body["visit_uv"][dim]}
    for r in body["visit_uv_new"][dim]:
        out[r["name"]] = (r["value"], out.get(r["name"], (0, 0))[1])
    return out


def total(audience: dict[str, Any]) -> int:
    return sum(r["value"] for r in audience["genders"])


def check_page_equals_api(page: Page, body: dict[str, Any], days: int, trend: bool = True) -> None:
    new, active = total(body["visit_uv_new"]), total(body["visit_uv"])
    assert page.inner_text("#total-new").replace(",", "") == str(new)
    assert page.inner_text("#total-active").replace(",", "") == str(active)
    for dim in DIMS:
        page.click(f"#index-dims [data-dim={dim}]")
        rows = page.eval_on_selector_all(
            "#index-table tbody tr",
            "trs => trs.map(tr => [tr.cells[0].textContent, +tr.dataset.new, +tr.dataset.active])",
        )
        assert {n: (a, b) for n, a, b in rows} == merged(body, dim), dim
    # Every chart has drawn a canvas, and its series hold the API's numbers.
    options = page.evaluate(
        """ids => Object.fromEntries(ids.map(id => {
             const c = echarts.getInstanceByDom(document.getElementById(id));
             const el = document.getElementById(id);
             return [id, c && el.querySelector('canvas') && el.offsetHeight > 0
                         ? c.getOption().series.map(s => s.data) : null];
           }))""",
        list(CHARTS if days > 1 and trend else CHARTS[1:]),
    )
    for dim in ("city", "ages", "genders", "platforms", "devices"):
        series = options[f"chart-{dim}"]
        assert series is not None, dim
        assert sorted(series[1]) == sorted(r["value"] for r in body["visit_uv"][dim][:20]), dim
        assert sum(series[0]) == sum(
            merged(body, dim)[r["name"]][0] for r in body["visit_uv"][dim][:20]
        ), dim
    on_map = [d["value"] for d in options["chart-province"][0] if "full" in d]
    provinces = body["visit_uv"]["province"]
    assert sorted(on_map) == sorted(r["value"] for r in provinces if r["id"] not in (0, 99))
    off_map = sum(r["value"] for r in provinces if r["id"] in (0, 99))  # 未知, 其他
    assert page.inner_text("#province-off-map") == f"未知 / 其他：{off_map:,}"
    if days > 1 and trend:
        drawn = options["chart-trend"]
        assert len(drawn[0]) == days and len(drawn[1]) == days


def test_link_sign_in_every_window_numbers_and_charts(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash)
    page.goto(dash.link())
    wait_ready(page)
    assert page.evaluate("location.hash") == ""  # the code left the address bar at once
    end = today_shanghai() - dt.timedelta(days=1)
    for button, days in (("昨天", 1), ("近7天", 7), ("近30天", 30)):
        page.click(f"[data-window] >> text={button}")
        wait_ready(page)
        begin = end - dt.timedelta(days=days - 1)
        label = f"{begin}" if days == 1 else f"{begin} 至 {end}"
        assert page.inner_text("#window-label") == label
        check_page_equals_api(page, dash.portrait(begin, end), days)
        if days == 30:
            page.evaluate("window.scrollTo(0, 0)")  # the sticky bar stays on top in the shot
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True)
    # Any range (the native API has no WeChat limits): the whole 40 days.
    begin = end - dt.timedelta(days=39)
    page.click("[data-window=custom]")
    page.fill("#begin", begin.isoformat())
    page.fill("#end", end.isoformat())
    page.click("#range button[type=submit]")
    wait_ready(page)
    check_page_equals_api(page, dash.portrait(begin, end), 40)
    # The index sorts by any column.
    page.click("#index-dims [data-dim=province]")
    page.click("th[data-sort=index]")
    assert page.get_attribute("th[data-sort=index]", "aria-sort") == "descending"
    shown = page.eval_on_selector_all(
        "#index-table tbody tr td:nth-child(6)", "tds => tds.map(td => td.textContent)"
    )
    numbers = [int(x) for x in shown if x != "—"]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) > 5
    page.click("th[data-sort=index]")
    assert page.get_attribute("th[data-sort=index]", "aria-sort") == "ascending"
    assert page.errors == []  # type: ignore[attr-defined]


def test_form_sign_in_on_a_phone_and_export(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash, PHONE)
    sign_in_by_form(page, dash)
    end = today_shanghai() - dt.timedelta(days=1)
    begin = end - dt.timedelta(days=6)
    body = dash.portrait(begin, end)
    check_page_equals_api(page, body, 7)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)

    with page.expect_download() as got:
        page.click("#export-json")
    exported = json.loads(Path(got.value.path()).read_text("utf-8"))
    assert got.value.suggested_filename == f"portrait-{APP}-{begin:%Y%m%d}-{end:%Y%m%d}.json"
    assert exported["portrait"] == body
    assert exported["totals"] == {
        "new": total(body["visit_uv_new"]),
        "active": total(body["visit_uv"]),
    }
    assert [d["date"] for d in exported["trend"]] == [
        f"{begin + dt.timedelta(days=i):%Y%m%d}" for i in range(7)
    ]

    with page.expect_download() as got:
        page.click("#export-csv")
    text = Path(got.value.path()).read_text("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    for dim in DIMS:  # names as the server's CSV writes them: no cell starts a formula
        mine = {r["name"]: (int(r["new"]), int(r["active"])) for r in rows if r["dimension"] == dim}
        assert mine == {csv_cell(k): v for k, v in merged(body, dim).items()}, dim
    devices = {r["name"] for r in rows if r["dimension"] == "devices"}
    assert {"'" + d for d in FORMULA_DEVICES} <= devices
    assert {(r["appid"], r["begin"], r["end"]) for r in rows} == {
        (APP, f"{begin:%Y%m%d}", f"{end:%Y%m%d}")
    }
    assert page.errors == []  # type: ignore[attr-defined]


# Every text ECharts drew in a chart, as [text, x, y, width, height] in the chart's pixels.
DRAWN_TEXTS = """id => {
  const c = echarts.getInstanceByDom(document.getElementById(id));
  const texts = c.getZr().storage.getDisplayList().filter(el => el.type === 'tspan').map(el => {
    const r = el.getBoundingRect().clone();
    r.applyTransform(el.getComputedTransform());
    return [el.style.text, r.x, r.y, r.width, r.height];
  });
  return {width: c.getWidth(), height: c.getHeight(), texts};
}"""


def scale_devices(route: Route) -> None:
    """The API's answer with device counts × 45: a top device of about 18,000 users."""
    body = route.fetch().json()
    if "by" in body:  # the pyramid's cross-tab: no device rows
        route.fulfill(json=body)
        return
    for audience in ("visit_uv", "visit_uv_new"):
        for row in body[audience]["devices"]:
            row["value"] *= 45
    route.fulfill(json=body)


def test_charts_read_well_on_a_laptop_and_a_phone(browser: Browser, dash: Dash) -> None:
    end = today_shanghai() - dt.timedelta(days=1)
    body = dash.portrait(end - dt.timedelta(days=6), end)
    ages = sorted(body["visit_uv"]["ages"], key=lambda r: (r["id"] == 0, r["id"]))
    for viewport in (DESKTOP, PHONE):
        page = new_page(browser, dash, viewport)
        page.route("**/v1/apps/**", scale_devices)
        sign_in_by_form(page, dash)
        options = page.evaluate(
            """() => Object.fromEntries(['trend', 'ages', 'genders', 'devices', 'province'].map(
                 k => [k, echarts.getInstanceByDom(document.getElementById('chart-' + k)).getOption()]))"""
        )
        # New users on their own axis: under the active users' scale they were a flat 0.
        trend = options["trend"]
        assert [a["name"] for a in trend["yAxis"]] == ["活跃", "新增"]
        assert [(s["name"], s["yAxisIndex"]) for s in trend["series"]] == [
            ("活跃用户", 0),
            ("新增用户", 1),
        ]
        # Age buckets and genders in their order, 未知 last.
        assert options["ages"]["xAxis"][0]["data"] == [r["name"] for r in ages]
        assert options["ages"]["xAxis"][0]["data"][-1] == "未知"
        assert options["genders"]["xAxis"][0]["data"] == ["男", "女", "未知"]
        # Numbers with thousands separators, on the axes and in the map's legend.
        assert (
            page.evaluate(
                """() => ['chart-devices', 'chart-trend', 'chart-province'].map(id => {
                 const o = echarts.getInstanceByDom(document.getElementById(id)).getOption();
                 const f = id === 'chart-province' ? o.visualMap[0].formatter
                         : (o.xAxis[0].type === 'value' ? o.xAxis : o.yAxis)[0].axisLabel.formatter;
                 return [f(18000), f(2500)];
               })"""
            )
            == [["18,000", "2,500"]] * 3
        )
        # Every label of the device chart is inside it and clear of the others; device names
        # take at most a third of its width (the full name is in the tooltip).
        drawn = page.evaluate(DRAWN_TEXTS, "chart-devices")
        width, height, texts = drawn["width"], drawn["height"], drawn["texts"]
        numbers = [int(t[0].replace(",", "")) for t in texts if re.fullmatch(r"[\d,]+", t[0])]
        assert max(numbers) >= 18_000, texts  # the axis's last label, as long as in issue 27
        for text, x, y, w, h in texts:
            assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, (text, x, w, width)
            assert w <= max(width / 3, 72) or text in ("新增用户", "活跃用户"), text
        for i, (a, ax, ay, aw, ah) in enumerate(texts):
            for b, bx, by, bw, bh in texts[i + 1 :]:
                assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)
        province = options["province"]
        legend = province["visualMap"][0]
        if viewport is PHONE:
            # Under the map, not over Xinjiang and Tibet; the map leaves it the room.
            assert (legend["orient"], legend["left"], legend["bottom"]) == (
                "horizontal",
                "center",
                0,
            )
            assert province["series"][0]["bottom"] == 56
            # The range on one line, neither date broken.
            dates = page.eval_on_selector_all(
                "#window-label .date", "ds => ds.map(d => [d.getClientRects().length, d.offsetTop])"
            )
            assert len(dates) == 2 and dates[0] == dates[1] == [1, dates[0][1]]
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        else:
            assert (legend["orient"], legend["left"], legend["bottom"]) == ("vertical", 8, 8)
            # Narrowed to a phone's width, the charts take the phone's options.
            page.set_viewport_size(PHONE)
            page.wait_for_function(
                """() => echarts.getInstanceByDom(document.getElementById('chart-province'))
                           .getOption().visualMap[0].orient === 'horizontal'"""
            )
        assert page.errors == []  # type: ignore[attr-defined]
        page.context.close()


def answer(errcode: int) -> Callable[[Route], None]:
    return lambda route: route.fulfill(
        json={"errcode": errcode, "errmsg": "some english rid: 1-2-3"}
    )


def test_sign_in_errors_in_chinese(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash)
    page.goto(dash.url + "/")
    messages, details = page.locator("#signin-message"), page.locator("#signin-detail")

    def try_secret(secret: str) -> None:
        page.fill("#signin-appid", APP)
        page.fill("#signin-secret", secret)
        page.click("#signin-app button[type=submit]")

    # A real wrong secret: a sentence, the errmsg and its rid in the small line under it.
    try_secret("wrong")
    expect(messages).to_have_text("登录失败：AppSecret 不正确，请检查后重试。")
    expect(details).to_have_text(re.compile(r"^错误码 40125：invalid appsecret rid: [0-9a-f-]+$"))
    # The other answers the sign-in can give (and one it cannot), each as the server sends it.
    sentences = {
        40013: "AppID 无效或未注册，请检查 AppID。",
        41004: "请填写 AppSecret。",
        40001: "凭证无效，请重新登录。",
        42001: "登录已过期，请重新登录。",
        45011: "尝试次数过多，请稍后再试。",
        40164: "当前 IP 不在该应用的 IP 白名单中。",
        48001: "没有权限：请从本站页面登录，并只查看已授权的应用。",
        -1: "服务器内部错误，请稍后重试。",
        43210: "发生未知错误（错误码 43210），请稍后重试。",
    }
    for code, sentence in sentences.items():
        page.route("**/dashboard/signin", answer(code))
        try_secret(f"guess-{code}")
        expect(messages).to_have_text(f"登录失败：{sentence}")
        expect(details).to_have_text(f"错误码 {code}：some english rid: 1-2-3")
        page.unroute("**/dashboard/signin")
    assert page.errors == []  # type: ignore[attr-defined]


def test_sign_out_expiry_used_link_and_states(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash)
    link = dash.link()
    page.goto(link)
    wait_ready(page)
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("userportrait_session", True, "Strict")
    ]
    assert page.evaluate("document.cookie") == "" and page.evaluate("localStorage.length") == 0
    page.click("#signout")
    expect(page.locator("#signin-message")).to_have_text("已退出登录。")
    page.reload()
    page.wait_for_selector("#signin:not([hidden])")
    # The same link a second time: used up.
    page.goto(link)
    expect(page.locator("#signin-message")).to_have_text(
        "登录链接无效、已使用或已过期，请重新登录。"
    )

    sign_in_by_form(page, dash)
    # An empty window and a server error have their own messages.
    page.click("[data-window=custom]")
    page.fill("#begin", "2020-01-01")
    page.fill("#end", "2020-01-07")
    page.click("#range button[type=submit]")
    wait_ready(page, "empty")
    assert page.inner_text("#status") == "该时间范围内没有访问数据。"
    assert page.inner_text("#total-active") == "0"
    for chart in CHARTS:  # no blank charts under the banner
        expect(page.locator(f"#{chart}")).to_be_hidden()
    expect(page.locator("#index-table")).to_be_hidden()
    # Resized while hidden, the charts come back at their boxes' new size.
    page.set_viewport_size({"width": 1000, "height": 800})
    page.click("[data-window='30']")
    wait_ready(page)
    sizes = page.evaluate(
        """ids => ids.map(id => {
             const el = document.getElementById(id), c = echarts.getInstanceByDom(el);
             return [el.offsetWidth - c.getWidth(), el.offsetHeight - c.getHeight()];
           })""",
        list(CHARTS),
    )
    assert sizes == [[0, 0]] * len(CHARTS)
    page.set_viewport_size(DESKTOP)
    page.route(
        "**/v1/apps/**",
        lambda route: route.fulfill(
            status=200, content_type="application/json",
            body='{"errcode":-1,"errmsg":"system error rid: 0-0-0"}',
        ),
    )  # fmt: skip
    page.click("[data-window='7']")
    wait_ready(page, "error")
    assert page.inner_text("#status") == "加载失败：服务器内部错误，请稍后重试。"
    assert page.get_attribute("#status", "title") == "错误码 -1：system error rid: 0-0-0"
    page.unroute("**/v1/apps/**")

    with sqlite3.connect(dash.settings.data_dir / "dashboard.sqlite") as con:
        con.execute("UPDATE sessions SET expires_at = 0")  # every session runs out now
    page.click("[data-window='30']")
    expect(page.locator("#signin-message")).to_have_text("登录已过期，请重新登录。")
    assert page.errors == []  # type: ignore[attr-defined]


def test_docs_page_works_offline(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash)
    page.goto(dash.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "userportrait" in page.inner_text(".swagger-ui .info .title")
    page.get_by_text("/v1/apps/{appid}/portrait", exact=True).wait_for()
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_guard_catches_another_host(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash)
    page.goto(dash.url + "/docs")
    page.evaluate("fetch('http://example.invalid/x').catch(() => null)")
    page.wait_for_timeout(200)
    assert dash.foreign == ["http://example.invalid/x"]
    dash.foreign.clear()  # seen: the guard works; the autouse check stays green


# -- issue 27: compare with the previous period, drill down by the map, the pyramid -------------


def change(value: int | None, previous: int | None) -> tuple[str, str] | None:
    """The page's rule: ▲/▼ and the change to 0.1% (half up, as JS toFixed), 新 where the
    previous period had none; (text, class)."""
    if value is None or previous is None:
        return None
    if previous == 0:
        return ("新", "up") if value > 0 else ("—", "flat")
    ratio = (value - previous) / previous
    shown = decimal.Decimal(abs(ratio) * 100).quantize(
        decimal.Decimal("0.1"), decimal.ROUND_HALF_UP
    )
    arrow, cls = ("▲ ", "up") if ratio > 0 else ("▼ ", "down") if ratio < 0 else ("", "flat")
    return f"{arrow}{shown}%", cls


def last_week() -> tuple[dt.date, dt.date]:
    end = today_shanghai() - dt.timedelta(days=1)
    return end - dt.timedelta(days=6), end


def test_compare_with_the_previous_period(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash)
    sign_in_by_form(page, dash)  # 近7天
    begin, end = last_week()
    assert page.inner_text("#delta-active") == ""
    page.check("#compare")
    page.wait_for_selector("#delta-active:not(:empty)")
    wait_ready(page)
    body = dash.portrait(begin, end, APP, ("compare", "previous"))
    before = (begin - dt.timedelta(days=7), begin - dt.timedelta(days=1))
    assert body["previous_ref_date"] == f"{before[0]:%Y%m%d}-{before[1]:%Y%m%d}"
    assert page.inner_text("#previous-label") == f"对比 {before[0]} 至 {before[1]}"
    for audience, box in (("visit_uv_new", "#delta-new"), ("visit_uv", "#delta-active")):
        t = body["totals"][audience]
        assert t["previous"] > 0
        text, cls = change(t["value"], t["previous"]) or ("", "")
        assert (page.inner_text(box), page.get_attribute(box, "class")) == (text, f"delta {cls}")
        assert page.get_attribute(box, "title") == f"上一周期：{t['previous']:,}"
    seen: set[str] = set()
    for dim in DIMS:
        page.click(f"#index-dims [data-dim={dim}]")
        cells = page.eval_on_selector_all(
            "#index-table tbody tr",
            """trs => trs.map(tr => [tr.cells[0].textContent,
                 tr.cells[6].textContent, tr.cells[6].className.split(' ').pop(),
                 tr.cells[7].textContent, tr.cells[7].className.split(' ').pop()])""",
        )
        # A row without new (or, past the top 20 devices, active) users now has no previous
        # count of them in the answer: no change shown.
        rows = [{r["name"]: r for r in body[a][dim]} for a in ("visit_uv_new", "visit_uv")]
        expected = {
            name: tuple(change(r[name]["value"], r[name]["previous"]) if name in r else None
                        for r in rows)
            for name in rows[0].keys() | rows[1].keys()
        }  # fmt: skip
        got = {
            name: ((nt, nc) if nt else None, (at, ac) if at else None)
            for name, nt, nc, at, ac in cells
        }
        assert got == expected, dim
        seen |= {at[0] for _, _, _, at, _ in cells if at}
    assert {"▲", "▼"} <= seen
    # A bar's tooltip has its change too; the client's text in it is escaped.
    for dim in ("city", "devices"):
        tips = page.evaluate(
            """id => {
                 const c = echarts.getInstanceByDom(document.getElementById(id));
                 const o = c.getOption(), names = o.yAxis[0].data;
                 return names.map((name, i) => o.tooltip[0].formatter(o.series.map((s, k) => ({
                   name, dataIndex: i, seriesIndex: k, seriesName: s.name, value: s.data[i], marker: ''}))));
               }""",
            f"chart-{dim}",
        )
        for row, tip in zip(body["visit_uv"][dim][:20], tips, strict=True):
            text, cls = change(row["value"], row["previous"]) or ("", "")
            assert f'活跃用户 {row["value"]:,} <span class="{cls}">{text}</span>' in tip, tip
            escaped = row["name"]
            for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"),
                                 ("'", "&#39;")):  # fmt: skip
                escaped = escaped.replace(char, entity)
            assert tip.split("<br>")[0] == escaped  # =HYPERLINK("…") and the like, as text
    assert page.is_visible("th[data-sort=active_change]")
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"), full_page=True)
    # Off again: no changes shown, the columns hidden.
    page.uncheck("#compare")
    page.wait_for_selector("#delta-active:empty", state="attached")
    wait_ready(page)
    assert not page.is_visible("th[data-sort=active_change]")
    assert page.errors == []  # type: ignore[attr-defined]


# The map's pixel of a point inside 广东 (广州), in the page's coordinates.
GUANGDONG = """() => {
  const el = document.getElementById('chart-province');
  const [x, y] = echarts.getInstanceByDom(el).convertToPixel({seriesIndex: 0}, [113.28, 23.12]);
  const r = el.getBoundingClientRect();
  return [r.left + x, r.top + y];
}"""


def click_guangdong(page: Page) -> None:
    page.locator("#chart-province").scroll_into_view_if_needed()
    page.mouse.click(*page.evaluate(GUANGDONG))


MAP_BOX = """() => echarts.getInstanceByDom(document.getElementById('chart-province'))
                  .getOption().series[0].boundingCoords || null"""


def test_map_click_drills_into_a_province_and_its_chip_removes_it(
    browser: Browser, dash: Dash
) -> None:
    page = new_page(browser, dash)
    sign_in_by_form(page, dash)
    begin, end = last_week()
    click_guangdong(page)
    page.wait_for_selector("#filters .chip[data-dim=province]")
    wait_ready(page)
    assert page.text_content("#filters .chip") == "省份: 广东 ✕"
    body = dash.portrait(begin, end, APP, ("filter", "province=44"))
    assert [r["id"] for r in body["visit_uv"]["province"]] == [44]
    check_page_equals_api(page, body, 7, trend=False)
    assert page.is_hidden("#panel-trend")  # the trend is of all users: hidden under a filter
    # The city chart lists the province's cities; the map is zoomed to it.
    cities = page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('chart-city')).getOption().yAxis[0].data"
    )
    assert cities == [r["name"] for r in body["visit_uv"]["city"][:20]]
    assert {"广州", "深圳"} <= set(cities)
    assert page.inner_text("#city-scope") == "广东 · "
    (west, north), (east, south) = page.evaluate(MAP_BOX)
    assert 108 < west < 110 and 117 < east < 118 and 19 < south < 20.5 and 25.5 < north < 27
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-drilldown.png"), full_page=True)
    # ✕ removes the filter: the whole app again, the map zoomed out.
    page.click("#filters .chip button")
    page.wait_for_selector("#filters", state="hidden")
    wait_ready(page)
    check_page_equals_api(page, dash.portrait(begin, end), 7)
    assert page.evaluate(MAP_BOX) is None
    assert page.inner_text("#city-scope") == ""
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_segment_below_the_threshold_says_so(browser: Browser, dash: Dash) -> None:
    """61502 (a filter's segment has fewer users than the app's k): a sentence, no numbers of
    another segment under the chip, and ✕ brings the page back."""
    page = new_page(browser, dash)
    sign_in_by_form(page, dash)
    page.route(re.compile(r"/v1/apps/.*[?&]filter=province"), answer(61502))
    click_guangdong(page)
    wait_ready(page, "error")
    assert page.inner_text("#status") == (
        "加载失败：筛选后的用户太少（低于该应用的隐私阈值），无法显示；请移除筛选。"
    )
    assert page.is_hidden("#content") and page.is_visible("#filters .chip")
    page.click("#filters .chip button")
    wait_ready(page)
    assert page.is_visible("#content") and page.is_hidden("#filters")
    assert page.errors == []  # type: ignore[attr-defined]


def test_gender_age_pyramid_sums_to_the_window_users(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash)
    sign_in_by_form(page, dash)
    begin, end = last_week()
    rows = dash.portrait(begin, end, APP, ("by", "genders,ages"))["visit_uv"]
    users = total(dash.portrait(begin, end)["visit_uv"])
    by_gender = {g: sum(r["value"] for r in rows if r["keys"][0]["id"] == g) for g in (1, 2)}
    other = users - by_gender[1] - by_gender[2]
    assert sum(r["value"] for r in rows) == users and other > 0
    shown = page.eval_on_selector("#pyramid-total", "el => ({...el.dataset})")
    assert shown == {"male": str(by_gender[1]), "female": str(by_gender[2]),
                     "other": str(other), "total": str(users)}  # fmt: skip
    assert page.inner_text("#pyramid-total") == (
        f"男 {by_gender[1]:,} · 女 {by_gender[2]:,} · 未知 {other:,} · 合计 {users:,}"
    )
    option = page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('chart-pyramid')).getOption()"
    )
    ages = sorted({(r["keys"][1]["id"], r["keys"][1]["name"]) for r in rows},
                  key=lambda a: (a[0] == 0, a[0]))  # fmt: skip
    assert option["yAxis"][0]["data"] == [name for _, name in ages]
    assert ages[-1][1] == "未知"
    cell = {(r["keys"][0]["id"], r["keys"][1]["id"]): r["value"] for r in rows}
    male, female = (s["data"] for s in option["series"])
    assert male == [-cell.get((1, a), 0) for a, _ in ages]
    assert female == [cell.get((2, a), 0) for a, _ in ages]
    assert page.errors == []  # type: ignore[attr-defined]


def test_compare_and_drill_down_on_a_phone(browser: Browser, dash: Dash) -> None:
    page = new_page(browser, dash, PHONE)
    sign_in_by_form(page, dash)
    page.check("#compare")
    page.wait_for_selector("#delta-active:not(:empty)")
    wait_ready(page)
    click_guangdong(page)
    page.wait_for_selector("#filters .chip[data-dim=province]")
    wait_ready(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # Each change sits inside its card, under the number, clear of it.
    boxes = page.evaluate(
        """() => ['new', 'active'].map(k => [document.getElementById('total-' + k),
                 document.getElementById('delta-' + k)].map(e => {
                   const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }))"""
    )
    cards = page.eval_on_selector_all(
        ".totals .card", "cs => cs.slice(0, 2).map(c => { const r = c.getBoundingClientRect(); "
        "return [r.left, r.top, r.right, r.bottom]; })"
    )  # fmt: skip
    for (number, delta), card in zip(boxes, cards, strict=True):
        assert card[0] <= delta[0] and delta[2] <= card[2] and delta[3] <= card[3], (delta, card)
        assert number[3] <= delta[1], (number, delta)
    chip = page.eval_on_selector(
        "#filters .chip", "c => { const r = c.getBoundingClientRect(); return [r.left, r.right]; }"
    )
    assert 0 <= chip[0] and chip[1] <= PHONE["width"]
    # The pyramid's labels: inside the chart, none over another.
    drawn = page.evaluate(DRAWN_TEXTS, "chart-pyramid")
    texts = drawn["texts"]
    assert len(texts) > 8
    for text, x, y, w, h in texts:
        assert x >= 0 and y >= 0 and x + w <= drawn["width"] and y + h <= drawn["height"], text
    for i, (a, ax, ay, aw, ah) in enumerate(texts):
        for b, bx, by, bw, bh in texts[i + 1 :]:
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone-drilldown.png"), full_page=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone-drilldown-top.png"))
    for part in ("panel-pyramid", "index"):
        page.locator(f"#{part}, section.{part}").screenshot(
            path=str(ARTIFACTS / f"dashboard-phone-{part}.png")
        )
    assert page.errors == []  # type: ignore[attr-defined]
