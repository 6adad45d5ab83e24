"""Engines by name, each behind the retention cut (``retained.py``). Heavy engines are
imported only when asked for."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from userportrait.engine.base import Engine
from userportrait.engine.retained import Retained
from userportrait.errors import InputError
from userportrait.store.lake import Lake

#: name -> "module:Class"; the class takes the Lake.
ENGINES: dict[str, str] = {
    "incremental": "userportrait.engine.incremental:IncrementalEngine",
    "reference": "userportrait.engine.reference:ReferenceEngine",
    "sql": "userportrait.engine.sql:SQLEngine",
    "spark": "userportrait.engine.spark:SparkEngine",
}


#: Other accepted names: ``duckdb`` was the default engine's name before it said what it is.
ALIASES: dict[str, str] = {"duckdb": "incremental"}


def get_engine(name: str, lake: Lake) -> Engine:
    target = ENGINES.get(ALIASES.get(name, name))
    if target is None:
        raise InputError(f"unknown engine {name!r}; choose one of {', '.join(sorted(ENGINES))}")
    module_name, cls_name = target.split(":")
    factory: Callable[[Lake], Engine] = getattr(import_module(module_name), cls_name)
    return Retained(factory(lake), lake)
