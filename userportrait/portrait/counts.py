"""What an engine returns: exact user counts per value, for new and for active users."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from userportrait.portrait.dims import ID_DIMS, Dim

#: Per dimension, value id -> users; for ``devices``, model name (None = 未知) -> users.
IdCounts = dict[int, int]
DeviceCounts = dict[str | None, int]


@dataclass(slots=True)
class AudienceCounts:
    """Counts of one audience (new or active users) in every dimension."""

    ids: dict[Dim, IdCounts] = field(default_factory=lambda: {d: {} for d in ID_DIMS})
    devices: DeviceCounts = field(default_factory=dict)

    def normalized(self) -> AudienceCounts:
        """The same counts with zero entries dropped, for comparing engines."""
        return AudienceCounts(
            ids={d: {k: v for k, v in self.ids[d].items() if v} for d in ID_DIMS},
            devices={k: v for k, v in self.devices.items() if v},
        )


@dataclass(slots=True)
class PortraitCounts:
    new: AudienceCounts
    active: AudienceCounts

    @classmethod
    def empty(cls) -> PortraitCounts:
        return cls(AudienceCounts(), AudienceCounts())


#: One value of a cross-tab cell: an id, or for ``devices`` a model name (None: 未知).
CellKey = int | str | None
Cell = tuple[CellKey, CellKey]


@dataclass(slots=True)
class CrossCounts:
    """What an engine returns for a cross-tab (``by``): users per pair of values."""

    new: dict[Cell, int] = field(default_factory=dict)
    active: dict[Cell, int] = field(default_factory=dict)

    def normalized(self) -> CrossCounts:
        return CrossCounts(
            new={k: v for k, v in self.new.items() if v},
            active={k: v for k, v in self.active.items() if v},
        )


class AudienceBuilder:
    """Accumulates one user at a time; used by engines that resolve users in Python."""

    def __init__(self) -> None:
        self._ids: dict[Dim, Counter[int]] = {d: Counter() for d in ID_DIMS}
        self._devices: Counter[str | None] = Counter()

    def add(self, values: dict[Dim, int], device: str | None) -> None:
        for d in ID_DIMS:
            self._ids[d][values[d]] += 1
        self._devices[device] += 1

    def build(self) -> AudienceCounts:
        return AudienceCounts(
            ids={d: dict(self._ids[d]) for d in ID_DIMS}, devices=dict(self._devices)
        )
