"""The ``userportrait`` command line (README.md; docs/architecture.md maps its modules).

The group lives here; each module holds one command or group of commands: ``ingest``
(``ingest``, ``compact``), ``expire``, ``portrait``, ``serve``, ``apps``, ``component``,
``dashboard``, ``regions``, ``spark``, ``synthetic`` (``generate``, ``demo``), ``forget``,
``backup`` (``backup``, ``restore``); ``common`` holds what they
share. Every module imports only click and ``common`` at start-up; the work is imported
inside each command, so a fresh ``portrait`` starts fast (tests/cli/test_portrait.py).
"""

from __future__ import annotations

import click

from userportrait import __version__
from userportrait.cli.apps import apps
from userportrait.cli.backup import backup, restore
from userportrait.cli.common import Group
from userportrait.cli.component import component
from userportrait.cli.dashboard import dashboard
from userportrait.cli.expire import expire
from userportrait.cli.forget import forget
from userportrait.cli.ingest import compact, ingest
from userportrait.cli.portrait import portrait
from userportrait.cli.regions import regions
from userportrait.cli.serve import serve
from userportrait.cli.spark import spark
from userportrait.cli.synthetic import demo, generate
from userportrait.runtime import tune_process


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="userportrait")
def cli() -> None:
    """Self-hosted WeChat mini-program user portraits.

    Load visit events with `ingest`, then ask for the portrait of any date window with
    `portrait`, or serve the WeChat-compatible API with `serve`.
    """
    tune_process()


for command in (ingest, portrait, generate, compact, expire, serve, apps, component, dashboard,
                demo, spark, regions, forget, backup, restore):  # fmt: skip
    cli.add_command(command)
