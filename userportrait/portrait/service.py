"""Orchestrates the stages: query -> engine -> counts (-> small-count protection) -> WeChat JSON."""

from __future__ import annotations

from typing import Any, Protocol

from userportrait.portrait.counts import PortraitCounts
from userportrait.portrait.privacy import protect
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.result import RefDateMode, shape


class CountsPortraits(Protocol):
    """What this stage needs of an engine (``engine.base.Engine`` is one): the domain
    package names no engine, so engines depend on it and not the other way round."""

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts: ...


def portrait(
    query: PortraitQuery, engine: CountsPortraits, mode: RefDateMode = "range"
) -> dict[str, Any]:
    counts = engine.run_portrait(query)
    if query.threshold is not None:
        counts = protect(counts, query.threshold)
    return shape(query, counts, mode)
