"""``GET /metrics``: Prometheus text, behind the dashboard admin key as a Bearer token.

What code counts as it works is in ``userportrait/metrics.py``; what is read at scrape time
(live buffer depth, lake size, state lag and failures) is collected here from the running
app. ``USERPORTRAIT_METRICS_OPEN=true`` serves it without the key (docs/operations.md).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response

from userportrait.api import doors
from userportrait.api.doors import Step, door
from userportrait.errors import AccessTokenMissing
from userportrait.metrics import REGISTRY
from userportrait.store.lake import Lake
from userportrait.store.state import state_failures, state_version

router = APIRouter(tags=["operations"], include_in_schema=False)
#: Lake files are stat'ed for their bytes at most this often (a scrape every 15 s is usual).
LAKE_EVERY_S: Final = 60.0


class AppCollector(Collector):
    """Gauges read from the app when scraped."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self._lake_at = -LAKE_EVERY_S
        self._lake: tuple[int, int, int] = (0, 0, 0)
        self._lock = threading.Lock()

    def _lake_totals(self, lake: Lake) -> tuple[int, int, int]:
        with self._lock:
            if time.monotonic() - self._lake_at >= LAKE_EVERY_S:
                files = lake.catalog.files()
                size = 0
                for f in files:
                    try:
                        size += os.stat(lake.root / f.path).st_size
                    except FileNotFoundError:  # retired since the listing
                        pass
                self._lake = (len(files), sum(f.rows for f in files), size)
                self._lake_at = time.monotonic()
            return self._lake

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lake: Lake = self.state.lake
        live = self.state.live
        yield GaugeMetricFamily(
            "userportrait_live_pending_events",
            "Events acknowledged by live ingestion and not yet in a committed batch.",
            value=live.pending() if live is not None else 0,
        )
        files, rows, size = self._lake_totals(lake)
        yield GaugeMetricFamily("userportrait_lake_files", "Parquet files in the lake.", files)
        yield GaugeMetricFamily("userportrait_lake_events", "Events in the lake.", rows)
        yield GaugeMetricFamily("userportrait_lake_bytes", "Bytes of the lake's files.", size)
        version = lake.catalog.version()
        yield GaugeMetricFamily(
            "userportrait_state_lag_batches",
            "Committed batches the portrait state has not caught up with yet.",
            value=max(0, version - state_version(lake)),
        )
        failing = GaugeMetricFamily(
            "userportrait_state_failures",
            "Failed attempts to update an app's state, for apps waiting for a retry.",
            labels=["appid"],
        )
        for appid, failure in state_failures(lake).items():
            failing.add_metric([appid], failure.get("attempts", 1))
        yield failing


def _text(state: Any) -> bytes:
    collector: AppCollector | None = getattr(state, "metrics_collector", None)
    if collector is None:
        collector = state.metrics_collector = AppCollector(state)
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(collector)
    return generate_latest(REGISTRY) + generate_latest(scraped)


@router.get("/metrics")
@door(Step.SECRET)
async def metrics(request: Request) -> Response:
    """Prometheus text; ``Authorization: Bearer <admin key>`` unless metrics are open."""
    if request.app.state.settings.metrics_open:
        doors.passed(request, Step.SECRET)  # opened by the operator: no secret to check
    else:
        header = request.headers.get("authorization", "")
        if header[:7].lower() != "bearer ":
            raise AccessTokenMissing("/metrics takes the dashboard admin key as a Bearer token")
        key = header[7:].strip()
        sessions = request.app.state.sessions
        await doors.secret(request, "admin", lambda: sessions.check_admin_key(key), cheap=True)
    body = await run_in_threadpool(_text, request.app.state)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
