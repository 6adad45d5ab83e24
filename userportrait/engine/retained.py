"""Every engine behind the retention cut: a window that starts before an app's cut is
refused (61501) before any engine counts it (``store/expire.py``: its events are gone).

``get_engine`` wraps every engine it makes in ``Retained``, so the HTTP routes, the CLI
and the dashboard all pass through this one check.
"""

from __future__ import annotations

from userportrait.engine.base import Engine
from userportrait.portrait.counts import CrossCounts, PortraitCounts
from userportrait.portrait.query import PortraitQuery
from userportrait.store.lake import Lake
from userportrait.store.retention import check_window


class Retained:
    def __init__(self, engine: Engine, lake: Lake) -> None:
        self.engine = engine
        self.lake = lake
        self.name = engine.name

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        check_window(self.lake.catalog, query.appid, query.begin)
        return self.engine.run_portrait(query)

    def run_crosstab(self, query: PortraitQuery) -> CrossCounts:
        check_window(self.lake.catalog, query.appid, query.begin)
        return self.engine.run_crosstab(query)

    def data_version(self) -> int | None:
        return self.engine.data_version()

    def close(self) -> None:
        self.engine.close()
