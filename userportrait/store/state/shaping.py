"""Window counts (dense arrays by value id) into the portrait's counts (ids, device names)."""

from __future__ import annotations

import numpy as np

from userportrait.portrait.counts import AudienceCounts, PortraitCounts
from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.windows import WindowCounts


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
