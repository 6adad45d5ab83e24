"""``portrait``: one app's portrait for a date window, as JSON, a table or CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from userportrait.cli.common import (
    DATA_DIR_OPTION,
    ENGINE_OPTION,
    SPARK_MASTER_OPTION,
    make_settings,
    parse_date_option,
)

if TYPE_CHECKING:
    from rich.table import Table


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
    "--raw", is_flag=True, help="Exact rows even for an app with a small-count threshold."
)
def portrait(
    appid: str,
    begin: str,
    end: str,
    data_dir: Path | None,
    engine: str | None,
    spark_master: str | None,
    fmt: str,
    raw: bool,
) -> None:
    """Print the portrait of new and active users of APPID for a date window.

    Any window works here (WeChat's 1/7/30-day limits apply only to the API), except for
    an app protected by `apps threshold`: it answers as the API does, 1/7/30-day windows
    with small rows folded, unless --raw is given (docs/privacy.md).
    """
    from userportrait.engine import get_engine
    from userportrait.portrait.request import make_query
    from userportrait.portrait.service import portrait as compute
    from userportrait.store.lake import Lake

    settings = make_settings(data_dir, engine=engine, spark_master=spark_master)
    b, e = parse_date_option(begin, "begin"), parse_date_option(end, "end")
    threshold = None
    if not raw and (settings.data_dir / "meta.sqlite").exists():
        from userportrait.store.thresholds import Thresholds

        threshold = Thresholds(settings.data_dir / "meta.sqlite").get(appid)
    query = make_query(appid, b, e, threshold=threshold)
    eng = get_engine(settings.engine, Lake(settings))
    try:
        body = compute(query, eng, "begin" if settings.ref_date_mode == "begin" else "range")
    finally:
        eng.close()
    from userportrait.portrait.export import portrait_csv

    if fmt == "json":
        click.echo(json.dumps(body, ensure_ascii=False))
    elif fmt == "csv":
        click.echo(portrait_csv(body), nl=False)
    else:
        from rich.console import Console

        Console().print(*portrait_tables(body))


def portrait_tables(body: dict[str, Any]) -> list[Table]:
    """One table per dimension: new vs active users and the new-vs-active index."""
    from rich.table import Table

    new, active = body["visit_uv_new"], body["visit_uv"]
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
        for r in rows:
            n = new_by_name.get(r["name"], 0)
            index = (n / total_new) / (r["value"] / total_active) * 100
            table.add_row(
                r["name"],
                str(n),
                str(r["value"]),
                f"{r['value'] / total_active:.1%}",
                f"{index:.0f}",
            )
        tables.append(table)
    return tables
