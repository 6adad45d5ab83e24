"""``portrait``: one app's portrait for a date window, as JSON, a table or CSV."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from userportrait.cli.common import (
    DATA_DIR_OPTION,
    ENGINE_OPTION,
    SPARK_MASTER_OPTION,
    fail,
    make_settings,
    parse_date_option,
)

if TYPE_CHECKING:
    from rich.table import Table

    from userportrait.settings import Settings
    from userportrait.store.lake import Lake


@click.command()
@click.option("--appid", required=True, help="The mini program's appid.")
@click.option("--begin", required=True, help="First day, yyyymmdd or yyyy-mm-dd.")
@click.option("--end", required=True, help="Last day (inclusive), yyyymmdd or yyyy-mm-dd.")
@DATA_DIR_OPTION
@ENGINE_OPTION
@SPARK_MASTER_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "table", "csv"]),
    default="json",
    show_default=True,
    help="json is exactly WeChat's success body.",
)
@click.option(
    "--compare",
    type=click.Choice(["previous"]),
    help="Also the window of the same length just before: a 'previous' value on every "
    "row, and both windows' totals.",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="DIM=ID",
    help="Only the users whose window value of DIM is ID (repeatable, AND); DIM one of "
    "province, city, genders, platforms, devices (ID: the model name), ages.",
)
@click.option("--by", metavar="DIM,DIM", help="Users per pair of values of two dimensions.")
@click.option(
    "--raw", is_flag=True, help="Exact rows even for an app with a small-count threshold."
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="--format table: rows per dimension, then a '… N more' line (0: all of them).",
)
@click.option(
    "--bom",
    is_flag=True,
    help="--format csv: start with a UTF-8 byte-order mark, so that Excel reads the Chinese "
    "names right (the dashboard's export has one).",
)
def portrait(
    appid: str,
    begin: str,
    end: str,
    data_dir: Path | None,
    engine: str | None,
    spark_master: str | None,
    fmt: str,
    compare: str | None,
    filters: tuple[str, ...],
    by: str | None,
    raw: bool,
    top: int,
    bom: bool,
) -> None:
    """Print the portrait of new and active users of APPID for a date window; --compare
    previous, --filter DIM=ID and --by DIM,DIM as the native API takes them (docs/api.md).

    Any window works here (WeChat's 1/7/30-day limits apply only to the API), except for
    an app protected by `apps threshold`: it answers as the API does, 1/7/30-day windows
    with small rows folded, unless --raw is given (docs/privacy.md).
    """
    from userportrait.engine import get_engine
    from userportrait.portrait.request import make_query
    from userportrait.portrait.service import portrait as compute

    settings = make_settings(data_dir, engine=engine, spark_master=spark_master)
    b, e = parse_date_option(begin, "begin"), parse_date_option(end, "end")
    _check_window(e)
    lake = _existing_lake(settings)
    threshold = None
    if not raw and (settings.data_dir / "meta.sqlite").exists():
        from userportrait.store.thresholds import Thresholds

        threshold = Thresholds(settings.data_dir / "meta.sqlite").get(appid)
    query = make_query(appid, b, e, threshold=threshold, filters=filters, by=by, compare=compare)
    eng = get_engine(settings.engine, lake)  # first: a missing engine says how to install it
    try:
        _check_app(lake, appid)
        body = compute(query, eng, "begin" if settings.ref_date_mode == "begin" else "range")
    finally:
        eng.close()
    from userportrait.portrait.export import portrait_csv

    if fmt == "json":
        click.echo(json.dumps(body, ensure_ascii=False))
    elif fmt == "csv":
        click.echo(("\ufeff" if bom else "") + portrait_csv(body), nl=False)
    else:
        from rich.console import Console

        Console().print(*(cross_tables(body, top) if "by" in body else portrait_tables(body, top)))


def _check_window(end: dt.date) -> None:
    """A window ending in the future is an error; one ending today gets a warning."""
    from userportrait.portrait.query import today_shanghai

    today = today_shanghai()
    if end > today:
        fail(f"--end {end:%Y%m%d} is in the future (today is {today:%Y%m%d} in Asia/Shanghai)")
    if end == today:
        click.echo(
            f"warning: the window ends today ({today:%Y%m%d}, Asia/Shanghai): "
            "today's numbers are incomplete until the day ends",
            err=True,
        )


def _existing_lake(settings: Settings) -> Lake:
    """The data directory's lake, if it exists: a reading command never creates a data
    directory (a typo'd path would answer empty)."""
    from userportrait.store.lake import Lake

    if not (settings.data_dir / "catalog.sqlite").exists():
        fail(
            f"no data directory at {settings.data_dir} (--data-dir or USERPORTRAIT_DATA_DIR); "
            "load events with `userportrait ingest FILE` first"
        )
    return Lake(settings)


def _check_app(lake: Lake, appid: str) -> None:
    """``appid`` has events here; else an error naming the apps that have (listed only
    then: a fresh ``portrait`` is a look-up, and a platform may hold thousands of apps)."""
    if not lake.catalog.has_events(appid):
        apps = lake.catalog.appids()
        known = ", ".join(apps[:10]) + (f" and {len(apps) - 10} more" if len(apps) > 10 else "")
        fail(f"no events for {appid} in {lake.root}; apps with events: {known or 'none'}")


def portrait_tables(body: dict[str, Any], top: int = 0) -> list[Table]:
    """One table per dimension: new vs active users and the new-vs-active index, its first
    ``top`` rows (0: all), then a '… N more' line and the totals."""
    from rich.table import Table

    new, active = body["visit_uv_new"], body["visit_uv"]
    compared = "previous_ref_date" in body
    tables = []
    for dim, rows in active.items():
        total_active = sum(r["value"] for r in rows) or 1
        new_by_name = {r["name"]: r["value"] for r in new[dim]}
        total_new = sum(new_by_name.values()) or 1
        table = Table(title=f"{dim} — {body['ref_date']}", title_justify="left")
        table.add_column("value")
        table.add_column("new", justify="right")
        table.add_column("active", justify="right")
        table.add_column("share", justify="right")
        table.add_column("index", justify="right")
        if compared:
            table.add_column(f"active {body['previous_ref_date']}", justify="right")
            table.add_column("change", justify="right")
        shown = rows[:top] if top else rows
        for r in shown:
            n = new_by_name.get(r["name"], 0)
            index = (n / total_new) / (r["value"] / total_active) * 100
            cells = [r["name"], str(n), str(r["value"]), f"{r['value'] / total_active:.1%}",
                     f"{index:.0f}"]  # fmt: skip
            if compared:
                cells += [str(r["previous"]), _change(r["value"], r["previous"])]
            table.add_row(*cells)
        pad = ["", ""] if compared else []
        if len(shown) < len(rows):
            table.add_row(f"… {len(rows) - len(shown)} more", "", "", "", "", *pad, style="dim")
        # Every user has exactly one value per dimension (未知 too), so a column's sum is
        # the window's users.
        totals = ["total", str(sum(new_by_name.values())), str(sum(r["value"] for r in rows)), "", ""]  # fmt: skip
        if compared:
            t = body["totals"]["visit_uv"]
            prev = t["previous"]
            totals += ["—" if prev is None else str(prev), _change(t["value"], prev)]
        table.add_row(*totals, style="bold", end_section=True)
        tables.append(table)
    return tables


def _change(value: int | None, previous: int | None) -> str:
    """▲/▼ and the relative change; "new" where there was nothing before."""
    if value is None or previous is None:
        return "—"
    if previous == 0:
        return "new" if value else ""
    change = (value - previous) / previous
    return f"{'▲' if change > 0 else '▼' if change < 0 else ''}{change:+.1%}"


def cross_tables(body: dict[str, Any], top: int = 0) -> list[Table]:
    """A cross-tab (``--by``): one table per audience, its first ``top`` rows (0: all)."""
    from rich.table import Table

    a, b = body["by"]
    compared = "previous_ref_date" in body
    tables = []
    for audience in ("visit_uv_new", "visit_uv"):
        rows = body[audience]
        title = f"{'new' if audience == 'visit_uv_new' else 'active'} users by {a}, {b} — {body['ref_date']}"  # fmt: skip
        table = Table(title=title, title_justify="left")
        for col in (a, b):
            table.add_column(col)
        table.add_column("users", justify="right")
        table.add_column("share", justify="right")
        if compared:
            table.add_column(f"users {body['previous_ref_date']}", justify="right")
            table.add_column("change", justify="right")
        users = sum(r["value"] for r in rows) or 1
        shown = rows[:top] if top else rows
        for r in shown:
            cells = [k["name"] for k in r["keys"]] + [str(r["value"]), f"{r['value'] / users:.1%}"]
            if compared:
                cells += [str(r["previous"]), _change(r["value"], r["previous"])]
            table.add_row(*cells)
        pad = ["", ""] if compared else []
        if len(shown) < len(rows):
            table.add_row(f"… {len(rows) - len(shown)} more", "", "", "", *pad, style="dim")
        table.add_row("total", "", str(sum(r["value"] for r in rows)), "", *pad, style="bold")
        tables.append(table)
    return tables
