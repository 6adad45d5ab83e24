"""``userportrait regions``: the offline IP database behind the ``ip`` field (docs/regions.md)."""

from __future__ import annotations

from pathlib import Path

import click

from userportrait.cli.common import DATA_DIR_OPTION, fail, make_settings


@click.group()
def regions() -> None:
    """Region data: the offline IP database (docs/regions.md)."""


@regions.command("ip-db")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@DATA_DIR_OPTION
def ip_db(file: Path | None, data_dir: Path | None) -> None:
    """Install FILE (an ip2region IPv4 xdb) for later ingests; without FILE, show the one in use.

    FILE is checked first (at most 1 GiB, its header, every index entry and region string,
    and 114.114.114.114 is in China in it), then copied atomically to
    DATA_DIR/regions/ip2region.xdb, which overrides the shipped database.
    Events ingested before keep their regions.
    """
    from userportrait.portrait import ipregion  # numpy: not for every CLI start
    from userportrait.store.regions import install_db
    from userportrait.store.sqlite import private_dir

    settings = make_settings(data_dir)
    try:
        if file is not None:
            private_dir(settings.data_dir)  # as any command that creates it: 0700
            db = install_db(file, settings.data_dir)
            click.echo(f"installed {file} (ip2region xdb {db.structure}.0, data of {db.data_date})")
        else:
            db = ipregion.load_db(ipregion.active_db(settings.data_dir))
    except ipregion.IpDbError as exc:
        fail(str(exc))
    shipped = " (shipped)" if db.path == ipregion.shipped_db() else ""
    click.echo(f"in use: {db.path}{shipped}, data of {db.data_date}")
