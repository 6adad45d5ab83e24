"""The one interface every engine implements."""

from __future__ import annotations

from typing import Protocol

from userportrait.portrait.counts import CrossCounts, PortraitCounts
from userportrait.portrait.query import PortraitQuery


class Engine(Protocol):
    """Computes exact portrait counts from the lake; semantics live in ``portrait/``."""

    name: str

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        """The six lists of the users in the window (and in ``query.filters``' segment)."""
        ...

    def run_crosstab(self, query: PortraitQuery) -> CrossCounts:
        """Users per pair of values of ``query.by`` (in ``query.filters``' segment)."""
        ...

    def data_version(self) -> int | None:
        """The catalog version the calling thread's last answer reflected, when it may lag
        the catalog (``incremental``: a derived store another writer is catching up); None
        when each query reads the catalog afresh, so an answer is never older than the
        catalog version read before asking. ``api/cache.py`` files answers under it."""
        ...

    def close(self) -> None: ...
