"""Orchestrates the stages: query -> engine -> counts (-> small-count protection) -> WeChat JSON."""

from __future__ import annotations

from typing import Any

from userportrait.engine.base import Engine
from userportrait.portrait.privacy import protect
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.result import RefDateMode, shape


def portrait(query: PortraitQuery, engine: Engine, mode: RefDateMode = "range") -> dict[str, Any]:
    counts = engine.run_portrait(query)
    if query.threshold is not None:
        counts = protect(counts, query.threshold)
    return shape(query, counts, mode)
