"""Segments and cross-tabs of a portrait (issue 27): parsing ``filter`` and ``by``, and what
they mean for one user (docs/semantics.md, "Filters and cross-tabs").

A filter ``DIM=ID`` keeps the users whose window value of DIM is ID — the value the portrait
itself counts them under (latest in the window, else the profile's, else 未知); several
filters are ANDed. A cross-tab ``by=A,B`` counts the users per pair of their A and B values.
The reference engine applies ``matches`` and ``cell`` user by user; the incremental engine
does the same in numpy (``store/windows.py``), kept equal by ``tests/test_segments_agree.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final, Literal

from userportrait.errors import InvalidArgs
from userportrait.portrait.counts import Cell
from userportrait.portrait.dims import DIMS, FOLDED_ID, UNKNOWN_NAME, Dim, value_name
from userportrait.portrait.query import Filter, FilterValue

_ID_RE: Final = re.compile(r"[0-9]{1,6}")
#: Longer than any model name the ingest keeps (portrait/devices.py).
MAX_DEVICE_NAME: Final = 200


def _dim(text: str, what: str) -> Dim:
    name = text.strip()
    for d in DIMS:
        if d == name:
            return d
    raise InvalidArgs(f"{what} dimension {name[:30]!r} is not one of {', '.join(DIMS)}")


def parse_filter(text: str) -> Filter:
    """``DIM=ID`` (devices: ``devices=MODEL NAME``, ``devices=未知``) -> (dim, value)."""
    name, sep, raw = text.partition("=")
    if not sep:
        raise InvalidArgs(f"filter {text[:50]!r} is not DIM=ID")
    dim = _dim(name, "filter")
    raw = raw.strip()
    if dim == "devices":
        if not raw or len(raw) > MAX_DEVICE_NAME:
            raise InvalidArgs(
                f"filter devices= takes a model name of 1 to {MAX_DEVICE_NAME} characters"
            )
        return dim, None if raw == UNKNOWN_NAME else raw
    if not _ID_RE.fullmatch(raw):
        raise InvalidArgs(f"filter {dim}={raw[:20]!r}: the id must be a number")
    value = int(raw)
    try:
        value_name(dim, value)
    except KeyError:
        raise InvalidArgs(f"filter {dim}={value}: no such {dim} id") from None
    if value == FOLDED_ID and dim in ("genders", "ages"):  # the fold row, never a user's value
        raise InvalidArgs(f"filter {dim}={value}: no such {dim} id")
    return dim, value


def parse_filters(texts: Iterable[str]) -> tuple[Filter, ...]:
    """Several filters, ANDed; a dimension at most once (two values would match no one)."""
    out: list[Filter] = []
    for text in texts:
        dim, value = parse_filter(text)
        if any(d == dim for d, _ in out):
            raise InvalidArgs(f"filter on {dim} given twice")
        out.append((dim, value))
    return tuple(out)


def parse_by(text: str) -> tuple[Dim, Dim]:
    """``A,B``: two different dimensions."""
    parts = text.split(",")
    if len(parts) != 2:
        raise InvalidArgs(f"by {text[:50]!r} is not two dimensions DIM,DIM")
    a, b = _dim(parts[0], "by"), _dim(parts[1], "by")
    if a == b:
        raise InvalidArgs(f"by names {a} twice")
    return a, b


def parse_compare(text: str | None) -> Literal["previous"] | None:
    if text is None or text == "":
        return None
    if text != "previous":
        raise InvalidArgs(f"compare {text[:20]!r}: the only comparison is 'previous'")
    return "previous"


def filter_text(filters: Iterable[Filter]) -> str:
    """``province=11&genders=1`` (errors and the CLI)."""
    return "&".join(f"{d}={UNKNOWN_NAME if v is None else v}" for d, v in filters)


def matches(filters: Iterable[Filter], values: Mapping[Dim, FilterValue]) -> bool:
    """Whether a user with these window values (ids; devices: name or None) is in the segment."""
    return all(values[d] == v for d, v in filters)


def cell(by: tuple[Dim, Dim], values: Mapping[Dim, FilterValue]) -> Cell:
    """The cross-tab cell of a user."""
    return values[by[0]], values[by[1]]


__all__ = ["cell", "filter_text", "matches", "parse_by", "parse_compare", "parse_filters"]
