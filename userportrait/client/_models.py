"""Values the client returns or takes: what a send did (``SendSummary``), how it retries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from userportrait.errors import ServiceError


@dataclass(frozen=True, slots=True)
class Rejected:
    """One event the server refused; ``index`` is its position in what was sent."""

    index: int
    reason: str
    event: Mapping[str, Any]


@dataclass(slots=True)
class SendSummary:
    """What ``send_events`` did, summed over its batches.

    ``duplicates`` counts events that repeat the ``event_id`` and ``ts`` of an earlier event
    of the same call: the server stores one of them (docs/storage.md, "Idempotency").
    ``resent`` counts events sent again after an attempt whose outcome was unknown (a
    network error, 429, 5xx); their event ids make the second copy a no-op on the server.
    """

    accepted: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    requests: int = 0
    resent: int = 0

    def add(self, other: SendSummary) -> None:
        self.accepted += other.accepted
        self.rejected.extend(other.rejected)
        self.duplicates += other.duplicates
        self.requests += other.requests
        self.resent += other.resent


@dataclass(frozen=True, slots=True)
class Retry:
    """Retries of one batch: ``attempts`` in all, full-jitter exponential back-off.

    The n-th wait is uniform in [0, min(max_backoff_s, backoff_s * 2**n)], and at least the
    server's ``Retry-After`` (capped at ``max_retry_after_s``) when it sends one.
    """

    attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry.attempts counts the first try: at least 1")


class EventsNotSent(ServiceError):
    """A batch still failed after its retries (or failed in a way no retry can fix).

    ``error`` is the last error (``InvalidCredential``, ``TransportError``, …);
    ``summary`` what the server acknowledged before; ``unsent`` every event not
    acknowledged, with the ``event_id`` it was sent with, so sending them again later
    never counts one twice.
    """

    errmsg = "events not sent"

    def __init__(
        self, error: Exception, summary: SendSummary, unsent: list[dict[str, Any]]
    ) -> None:
        super().__init__(f"{len(unsent)} event(s): {error}")
        self.error = error
        self.summary = summary
        self.unsent = unsent
