"""The dashboard at ``/``: static page and vendored assets (``static/``), sign-in sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Final

STATIC_DIR: Final = Path(__file__).parent / "static"
