"""Orchestrates the stages: query -> engine -> counts (-> small-count protection) -> WeChat JSON."""

from __future__ import annotations

from typing import Any, Protocol

from userportrait.portrait.counts import CrossCounts, PortraitCounts
from userportrait.portrait.privacy import check_segment, protect, protect_cross
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.result import RefDateMode, audience_total, shape, shape_cross


class CountsPortraits(Protocol):
    """What this stage needs of an engine (``engine.base.Engine`` is one): the domain
    package names no engine, so engines depend on it and not the other way round."""

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts: ...

    def run_crosstab(self, query: PortraitQuery) -> CrossCounts: ...


def portrait(
    query: PortraitQuery, engine: CountsPortraits, mode: RefDateMode = "range"
) -> dict[str, Any]:
    """The answer to ``query``; ``compare`` asks the engine the previous window as a
    second plain query and shapes both together."""
    if query.by is not None:
        cross = _crosstab(query.current(), engine)
        before = _crosstab(query.previous(), engine) if query.compare else None
        return shape_cross(query, cross, mode, before)
    counts = _portrait(query.current(), engine)
    previous = _portrait(query.previous(), engine) if query.compare else None
    return shape(query, counts, mode, previous)


def _portrait(query: PortraitQuery, engine: CountsPortraits) -> PortraitCounts:
    counts = engine.run_portrait(query)
    if query.threshold is not None:
        check_segment(query, audience_total(counts.active))
        counts = protect(counts, query.threshold)
    return counts


def _crosstab(query: PortraitQuery, engine: CountsPortraits) -> CrossCounts:
    assert query.by is not None
    counts = engine.run_crosstab(query)
    if query.threshold is not None:
        check_segment(query, sum(counts.active.values()))
        counts = protect_cross(counts, query.threshold, query.by)
    return counts
