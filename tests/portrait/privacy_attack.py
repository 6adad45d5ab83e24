"""An attacker of protected portraits: a linear program over everything one answer shows.

It knows the value tables (every province, city, gender, platform and age id, and every
device model of the data set), the folding rules of docs/privacy.md, and the relations the
rows obey: each dimension sums to the audience's total, a new-user row never exceeds its
active row, and (when the data keeps them) a province holds its cities exactly, with
the users who have a province but no city making up the 未知 city. Every subtraction an
attacker could try is one of these equations, so a folded count that no combination of
them pins down cannot be recovered by subtraction either. For each folded cell it solves
min and max of the cell and calls it recovered when they meet.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix

from userportrait.portrait import regions
from userportrait.portrait.counts import AudienceCounts, PortraitCounts
from userportrait.portrait.dims import AGES, GENDERS, PLATFORMS, TOP_DEVICES, UNKNOWN_NAME
from userportrait.portrait.privacy import CITY_REST, OTHER_DEVICE, OTHER_ID

AUDIENCES = {"new": "visit_uv_new", "active": "visit_uv"}
PROVINCES = [0, 99, *(p for p, _ in regions.all_provinces())]
CITIES = sorted(
    {0, CITY_REST, *(c for c, _, _ in regions.all_cities()), *(p * 100 + 99 for p in PROVINCES)}
)


@dataclass
class LP:
    index: dict[tuple[str, str, Hashable], int] = field(default_factory=dict)
    lo: list[float] = field(default_factory=list)
    hi: list[float | None] = field(default_factory=list)
    eq: list[tuple[dict[int, float], float]] = field(default_factory=list)
    ub: list[tuple[dict[int, float], float]] = field(default_factory=list)
    _built: tuple[Any, ...] | None = None

    def var(self, key: tuple[str, str, Hashable], lo: float = 0, hi: float | None = None) -> int:
        if key not in self.index:
            self.index[key] = len(self.lo)
            self.lo.append(lo)
            self.hi.append(hi)
        return self.index[key]

    def solve(self, c: Any) -> Any:
        """A vertex minimising ``c``."""
        n = len(self.lo)
        if self._built is None:
            self._built = (*_matrix(self.eq, n), *_matrix(self.ub, n),
                           list(zip(self.lo, self.hi, strict=True)))  # fmt: skip
        a_eq, b_eq, a_ub, b_ub, bounds = self._built
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds,
                      method="highs")  # fmt: skip
        assert res.status == 0, res.message
        return res.x

    def bounds(self, target: int) -> tuple[float, float]:
        c = np.zeros(len(self.lo))
        c[target] = 1.0
        lo = self.solve(c)[target]
        c[target] = -1.0
        return lo, self.solve(c)[target]

    def satisfied_by(self, values: dict[int, float]) -> bool:
        def total(row: dict[int, float]) -> float:
            return sum(coef * values.get(i, 0.0) for i, coef in row.items())

        return all(abs(total(r) - b) < 1e-9 for r, b in self.eq) and all(
            total(r) <= b + 1e-9 for r, b in self.ub
        )


def _matrix(rows: list[tuple[dict[int, float], float]], n: int) -> tuple[Any, Any]:
    if not rows:
        return None, None
    r, c, v = [], [], []
    for i, (row, _) in enumerate(rows):
        for j, coef in row.items():
            r.append(i)
            c.append(j)
            v.append(coef)
    return csr_matrix((v, (r, c)), shape=(len(rows), n)), np.array([b for _, b in rows])


def _shown(body: dict[str, Any], audience: str, dim: str) -> dict[Hashable, int]:
    rows = body[AUDIENCES[audience]][dim]
    if dim == "devices":
        return {None if r["name"] == UNKNOWN_NAME else r["name"]: r["value"] for r in rows}
    return {r["id"]: r["value"] for r in rows}


def _truth(counts: AudienceCounts, dim: str) -> dict[Hashable, int]:
    if dim == "devices":
        return dict(counts.devices)
    return dict(counts.ids[dim])  # type: ignore[index]


def _bucket_of(dim: str, value: Hashable, shown_provinces: set[Hashable]) -> Hashable:
    if dim == "devices":
        return OTHER_DEVICE
    if dim == "city":
        p = regions.province_of_city(int(value))  # type: ignore[call-overload]
        return p * 100 + 99 if p not in (0, 99) and p in shown_provinces else CITY_REST
    return OTHER_ID[dim]  # type: ignore[index]


def build(body: dict[str, Any], dims: dict[str, list[Hashable]], hierarchy: bool) -> LP:
    lp = LP()
    totals = {a: sum(r["value"] for r in body[AUDIENCES[a]]["genders"]) for a in AUDIENCES}
    for a in AUDIENCES:
        provinces_shown = set(_shown(body, a, "province")) - {99}
        for dim, domain in dims.items():
            shown = _shown(body, a, dim)
            truncated = dim == "devices" and len(shown) >= TOP_DEVICES
            buckets: dict[Hashable, dict[int, float]] = {}
            for v in domain:
                b = _bucket_of(dim, v, provinces_shown)
                if v in shown and v != b:
                    lp.var((a, dim, v), shown[v], shown[v])
                    continue
                i = lp.var((a, dim, v))
                buckets.setdefault(b, {})[i] = 1.0
            if not truncated:
                for b, row in buckets.items():
                    lp.eq.append((row, float(shown.get(b, 0))))
            lp.eq.append(({lp.index[(a, dim, v)]: 1.0 for v in domain}, float(totals[a])))
        if hierarchy:
            slacks = {}
            for p in PROVINCES[1:]:
                s = lp.var((a, "slack", p))
                slacks[p] = s
                row = {lp.index[(a, "province", p)]: 1.0, s: -1.0}
                for c in CITIES:
                    if c and regions.province_of_city(c) == p:
                        row[lp.index[(a, "city", c)]] = -1.0
                lp.eq.append((row, 0.0))
            row = {lp.index[(a, "city", 0)]: 1.0, lp.index[(a, "province", 0)]: -1.0}
            row.update(dict.fromkeys(slacks.values(), -1.0))
            lp.eq.append((row, 0.0))
    for dim, domain in dims.items():
        for v in domain:
            lp.ub.append(({lp.index[("new", dim, v)]: 1.0, lp.index[("active", dim, v)]: -1.0}, 0))
    return lp


def truth_values(lp: LP, counts: PortraitCounts) -> dict[int, float]:
    out: dict[int, float] = {}
    for (a, dim, v), i in lp.index.items():
        aud = counts.new if a == "new" else counts.active
        if dim == "slack":
            prov = aud.ids["province"].get(v, 0)  # type: ignore[call-overload]
            cities = sum(n for c, n in aud.ids["city"].items() if c and c // 100 == v)
            out[i] = float(prov - cities)
        else:
            out[i] = float(_truth(aud, dim).get(v, 0))
    return out


def groups(devices: Iterable[str | None]) -> list[tuple[dict[str, list[Hashable]], bool]]:
    """The independent parts of an answer (they share nothing but the totals)."""
    return [
        ({"genders": list(GENDERS)}, False),
        ({"platforms": list(PLATFORMS)}, False),
        ({"ages": list(AGES)}, False),
        ({"devices": sorted(set(devices) | {OTHER_DEVICE}, key=lambda d: (d is None, d))}, False),
        ({"province": list(PROVINCES), "city": list(CITIES)}, True),
    ]


def attack(body: dict[str, Any], truth: PortraitCounts, k: int, devices: Iterable[str | None],
           cities_in_provinces: bool = False) -> list[str]:  # fmt: skip
    """The folded cells (true value in 1..k-1) whose value the answer pins down.

    ``cities_in_provinces``: the data keeps the city/province relation, so the attacker
    must have used it (the test's own data does; the generator's users move).
    """
    found = []
    for dims, hierarchy in groups(devices):
        lp = build(body, dims, False)
        values = truth_values(lp, truth)
        assert lp.satisfied_by(values), ("the answer contradicts the truth", dims.keys())
        if hierarchy:
            deep = build(body, dims, True)
            deep_values = truth_values(deep, truth)
            if deep.satisfied_by(deep_values):  # the data keeps cities inside provinces
                lp, values = deep, deep_values
            else:
                assert not cities_in_provinces, "the answer contradicts the city relation"
        cells = [(key, i) for key, i in lp.index.items()
                 if key[1] != "slack" and 0 < values[i] < k]  # fmt: skip
        # Cheap first: vertices for random objectives; a cell that moves there is free.
        rng = np.random.default_rng(0)
        for _ in range(4):
            c = np.zeros(len(lp.lo))
            c[[i for _, i in cells]] = rng.choice([-1.0, 1.0], size=len(cells))
            x = lp.solve(c)
            cells = [(key, i) for key, i in cells if abs(x[i] - values[i]) < 0.5]
        for (a, dim, v), i in cells:
            lo, hi = lp.bounds(i)
            if hi - lo < 0.5:
                found.append(f"{a} {dim} {v}: {values[i]:.0f} (bounds {lo:.1f}..{hi:.1f})")
    return found
