"""Settings: every field documented, env parsing with units in names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from userportrait.settings import ENV_PREFIX, SETTINGS, Settings

DOCS = Path(__file__).parent.parent / "docs" / "settings.md"


def test_settings_are_documented() -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    assert sorted(names) == sorted(SETTINGS)
    text = DOCS.read_text("utf-8")
    for name in names:
        assert f"`{ENV_PREFIX}{name.upper()}`" in text, name


def test_from_env_and_overrides(tmp_path: Path) -> None:
    env = {"USERPORTRAIT_DATA_DIR": str(tmp_path), "USERPORTRAIT_WECHAT_LIMITS": "false",
           "USERPORTRAIT_QUOTA_PER_DAY": "5"}  # fmt: skip
    s = Settings.from_env(env, port=9)
    assert (s.data_dir, s.wechat_limits, s.quota_per_day, s.port) == (tmp_path, False, 5, 9)
    with pytest.raises(ValueError, match="USERPORTRAIT_QUOTA_PER_DAY"):
        Settings.from_env({"USERPORTRAIT_QUOTA_PER_DAY": "many"})


def test_every_setting_is_read_somewhere() -> None:
    """A setting nothing reads is a promise the code does not keep (docs list them all)."""
    import re

    import userportrait

    root = Path(userportrait.__file__).parent
    text = "\n".join(p.read_text("utf-8") for p in root.rglob("*.py") if p.name != "settings.py")
    unread = [
        f.name
        for f in dataclasses.fields(Settings)
        if not re.search(rf"\.{f.name}\b|\b{f.name}=", text)
    ]
    assert unread == []
