"""The process's Prometheus metrics (``GET /metrics``: ``api/metrics.py``; docs/operations.md).

Counters and histograms that code updates as it works live here, in one registry, so the
modules that update them (the HTTP layer, live ingestion, the secret guard) import nothing
but this. What is read when scraped (buffer depth, lake size, state lag) is collected by
``api/metrics.py`` from the running app.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY: Final = CollectorRegistry(auto_describe=True)

REQUESTS: Final = Counter(
    "userportrait_requests",
    "HTTP requests answered, by route template, method and errcode (0: success).",
    ["route", "method", "errcode"],
    registry=REGISTRY,
)
REQUEST_SECONDS: Final = Histogram(
    "userportrait_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)
EVENTS_ACCEPTED: Final = Counter(
    "userportrait_records_accepted",
    "Records accepted by live ingestion (events or profiles).",
    ["kind"],
    registry=REGISTRY,
)
EVENTS_REJECTED: Final = Counter(
    "userportrait_records_rejected",
    "Records refused by live ingestion, by kind and reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
FLUSH_SECONDS: Final = Histogram(
    "userportrait_live_flush_duration_seconds",
    "Time of one live flush: a closed WAL segment into the lake and the state.",
    buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
    registry=REGISTRY,
)
SECRET_CHECKS: Final = Counter(
    "userportrait_secret_checks",
    "Secret checks (app secrets, admin key, sign-in codes, platform secrets and tickets) by "
    "outcome: right, wrong, refused (45011 before the check), busy (-1, the queue was full).",
    ["outcome"],
    registry=REGISTRY,
)


def reason_label(reason: str) -> str:
    """A reject reason without the record's own values (``... : 'x'``), so labels stay few."""
    return reason.split(":", 1)[0].strip()[:80]
