from __future__ import annotations

from userportrait.cli import cli

if __name__ == "__main__":
    cli()
