"""Print docs/settings.md from the Settings object (python scripts/settings_doc.py > docs/settings.md)."""

from __future__ import annotations

import dataclasses

from userportrait.settings import ENV_PREFIX, SETTINGS, Settings

print("# Settings\n")
print("One `Settings` object, built by `Settings.from_env()` (CLI) and passed into")
print("`create_app(settings)`. Every setting is an environment variable; CLI options such as")
print("`--data-dir`, `--host`, `--port`, `--engine` override them.\n")
print("| variable | default | meaning |")
print("|---|---|---|")
for f in dataclasses.fields(Settings):
    default = (
        "~/.local/share/userportrait"
        if f.name == "data_dir"
        else (f.default if f.default is not dataclasses.MISSING else "")
    )
    print(f"| `{ENV_PREFIX}{f.name.upper()}` | `{default}` | {SETTINGS[f.name]} |")
