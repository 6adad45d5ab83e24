"""userportrait: self-hosted WeChat mini-program user portraits."""

from __future__ import annotations

__version__ = "0.1.0"
