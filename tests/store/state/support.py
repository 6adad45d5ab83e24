"""Random day partitions for the state's tests (the sizes of a small app's values)."""

from __future__ import annotations

import numpy as np

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.state import VALUE_DTYPES
from userportrait.store.windows import DayPart

SIZES: dict[Dim, int] = {
    "province": 5,
    "city": 9,
    "genders": 3,
    "platforms": 4,
    "ages": 7,
    "devices": 6,
}


def random_days(rng: np.random.Generator, n_users: int, count: int) -> list[DayPart]:
    """``count`` ascending day partitions with gaps from 1 to 300 days."""
    parts = []
    t = 1000
    for _ in range(count):
        t += int(rng.choice([1, 1, 2, 6, 30, 40, 300]))
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(5, 80)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(VALUE_DTYPES[d]) for d in DIMS}
        parts.append(DayPart(t, uid.astype(np.uint32), values))
    return parts
