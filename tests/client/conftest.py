"""Fixtures of the client tests: ``events_server`` (tests/client/faults.py)."""

from __future__ import annotations

from tests.client.faults import events_server

__all__ = ["events_server"]
