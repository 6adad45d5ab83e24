"""The one interface every engine implements."""

from __future__ import annotations

from typing import Protocol

from userportrait.portrait.counts import PortraitCounts
from userportrait.portrait.query import PortraitQuery


class Engine(Protocol):
    """Computes exact portrait counts from the lake; semantics live in ``portrait/``."""

    name: str

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts: ...

    def close(self) -> None: ...
