"""Orchestrates the stages: query -> engine -> counts -> WeChat JSON."""

from __future__ import annotations

from typing import Any

from userportrait.engine.base import Engine
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.result import RefDateMode, shape


def portrait(query: PortraitQuery, engine: Engine, mode: RefDateMode = "range") -> dict[str, Any]:
    return shape(query, engine.run_portrait(query), mode)
