"""The window table (``windows.bV.npz``): the counts of every kept window, and turning
window counts into the portrait's counts (value ids and device names)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from userportrait.portrait.counts import AudienceCounts, PortraitCounts
from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.durable import atomic_write
from userportrait.store.windows import WindowCounts


class WindowTable:
    """Nonzero counts of many windows, sorted by (length, end), with an index of slices."""

    def __init__(self, cols: dict[str, np.ndarray[Any, Any]]) -> None:
        order = np.lexsort((cols["end"], cols["length"]))
        self.cols = {k: v[order] for k, v in cols.items()}
        self.index: dict[tuple[int, int], tuple[int, int]] = {}
        if len(order):
            keys = np.stack([self.cols["length"], self.cols["end"]], axis=1)
            cuts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
            starts = [0, *cuts.tolist()]
            stops = [*cuts.tolist(), len(order)]
            for a, b in zip(starts, stops, strict=True):
                self.index[(int(keys[a, 0]), int(keys[a, 1]))] = (a, b)

    @classmethod
    def empty(cls) -> WindowTable:
        return cls({k: np.empty(0, t) for k, t in _WINDOW_COLS.items()})

    @classmethod
    def load(cls, path: Path) -> WindowTable:
        with np.load(path) as z:
            return cls({k: z[k] for k in _WINDOW_COLS})

    def save(self, path: Path) -> None:
        cols: dict[str, Any] = self.cols
        atomic_write(path, lambda fh: np.savez(fh, **cols))

    def without(self, keys: set[tuple[int, int]]) -> WindowTable:
        if not keys:
            return self
        drop = np.zeros(len(self.cols["end"]), bool)
        for key in keys & set(self.index):
            a, b = self.index[key]
            drop[a:b] = True
        return WindowTable({k: v[~drop] for k, v in self.cols.items()})

    def plus(self, windows: Mapping[tuple[int, int], WindowCounts]) -> WindowTable:
        parts = [self.cols]
        for (n, e), w in windows.items():
            for a, audience in enumerate((w.new, w.active)):
                for di, d in enumerate(DIMS):
                    ids = np.flatnonzero(audience[d])
                    parts.append(
                        {
                            "length": np.full(len(ids), n, np.int16),
                            "end": np.full(len(ids), e, np.int32),
                            "audience": np.full(len(ids), a, np.int8),
                            "dim": np.full(len(ids), di, np.int8),
                            "value": ids.astype(np.int32),
                            "n": audience[d][ids].astype(np.int64),
                        }
                    )
        return WindowTable({k: np.concatenate([p[k] for p in parts]) for k in _WINDOW_COLS})

    def get(self, n: int, end: int, devices: list[str]) -> PortraitCounts | None:
        hit = self.index.get((n, end))
        if hit is None:
            return None
        a, b = hit
        out = PortraitCounts.empty()
        cols = [self.cols[k][a:b].tolist() for k in ("audience", "dim", "value", "n")]
        for aud, di, value, count in zip(*cols, strict=True):
            _add(out.new if aud == 0 else out.active, DIMS[di], value, count, devices)
        return out


_WINDOW_COLS: dict[str, Any] = {
    "length": np.int16,
    "end": np.int32,
    "audience": np.int8,
    "dim": np.int8,
    "value": np.int32,
    "n": np.int64,
}


def to_portrait(w: WindowCounts, devices: list[str]) -> PortraitCounts:
    out = PortraitCounts.empty()
    for audience, arrays in ((out.new, w.new), (out.active, w.active)):
        for d in DIMS:
            ids = np.flatnonzero(arrays[d])
            for value, count in zip(ids.tolist(), arrays[d][ids].tolist(), strict=True):
                _add(audience, d, value, count, devices)
    return out


def _add(audience: AudienceCounts, dim: Dim, value: int, count: int, devices: list[str]) -> None:
    if dim == "devices":
        audience.devices[devices[value - 1] if value else None] = count
    else:
        audience.ids[dim][value] = count
