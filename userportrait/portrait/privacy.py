"""Small-count protection: cell suppression with complementary suppression (docs/privacy.md).

Pure: ``protect(counts, k)`` takes an engine's exact counts and returns counts in which every
row below ``k`` is folded into its dimension's 其他 row, plus the further (complementary)
rows that keep each folded row from being recovered by subtraction inside one answer:

* every 其他 row that holds a folded row holds at least two real rows (its own genuine
  其他 users do not count), so "其他 minus the rest" never isolates one of them; when a
  dimension has fewer than two real rows, all of them are folded;
* new users hide at least what active users hide (a new row is never shown beside a hidden
  active row it would bound from below);
* cities fold into their province's 其他 city (``p*100+99``) while the province row is
  shown; the cities of a folded province (and a folded 未知 or abroad city) go to 9999
  其他, and a province whose folded cities cannot find a second one to hide with is folded
  itself, so "province minus its shown cities" isolates nothing either.

Filters and cross-tabs (issue 27) go through the same rule: a segment with fewer than ``k``
active users in a window is refused (``check_segment``, 61502), a cross-tab's cells fold
with ``protect_cross``, and a total below ``k`` is withheld (``total``).

``tests/portrait/test_privacy.py`` attacks the result with a linear program over every relation the
rows obey (sums, new <= active, cities within provinces).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Final, TypeVar

from userportrait.errors import SegmentTooSmall
from userportrait.portrait.counts import AudienceCounts, Cell, CellKey, CrossCounts, PortraitCounts
from userportrait.portrait.dims import FOLDED_ID, OTHER_NAME, Dim
from userportrait.portrait.query import PortraitQuery, yyyymmdd
from userportrait.portrait.regions import province_of_city
from userportrait.portrait.segments import filter_text

K = TypeVar("K", bound=Hashable)

#: The 其他 row each id dimension folds into (docs/semantics.md; genders and ages have none
#: there, so they use 99 like province, docs/privacy.md). Cities use ``p*100+99`` or ``CITY_REST``.
OTHER_ID: Final[dict[Dim, int]] = {
    "province": 99,
    "genders": FOLDED_ID,
    "platforms": 6,
    "ages": FOLDED_ID,
}
CITY_REST: Final = 9999
OTHER_DEVICE: Final = OTHER_NAME
_NO_PROVINCE: Final = (0, 99)  # 未知 and 其他: no cities of their own


def _order(counts: Mapping[K, int]) -> Callable[[K], tuple[int, bool, str]]:
    return lambda v: (counts[v], v is not None, str(v))


def hidden(counts: Mapping[K, int], k: int, forced: set[K], bucket: K) -> set[K]:
    """The rows of one dimension to fold into ``bucket``: below k, forced, complementary."""
    real = {v for v, c in counts.items() if c > 0 and v != bucket}
    out = {v for v in real if counts[v] < k} | (forced & real)
    if not out and not 0 < counts.get(bucket, 0) < k:
        return out
    shown = sorted(real - out, key=_order(counts))
    while len(out) < 2 and shown:
        out.add(shown.pop(0))
    return out


def fold(counts: Mapping[K, int], rows: set[K], bucket_of: Callable[[K], K]) -> dict[K, int]:
    out: dict[K, int] = {}
    for v, c in counts.items():
        if c > 0:
            key = bucket_of(v) if v in rows else v
            out[key] = out.get(key, 0) + c
    return out


def _cities(
    cities: Mapping[int, int], k: int, provinces_hidden: set[int], forced: set[int]
) -> tuple[set[int], set[int]]:
    """Cities to fold, and provinces that must fold too (0 there: any one province).

    A shown province's folded cities go to its own 其他 city and need a second real city
    there; the cities of folded provinces, and folded 未知/abroad cities, share 9999.
    """
    groups: dict[int, dict[int, int]] = {}
    for c, n in cities.items():
        if n > 0:
            groups.setdefault(province_of_city(c), {})[c] = n
    out: set[int] = set()
    need: set[int] = set()
    rest: dict[int, int] = {}
    for p, group in groups.items():
        if p in provinces_hidden:
            out |= set(group) - {CITY_REST}
        elif p in _NO_PROVINCE:
            rest.update(group)
        else:
            rows = hidden(group, k, forced, p * 100 + 99)
            if len(rows) == 1:
                need.add(p)
            out |= rows
    real = {c for c in rest if c != CITY_REST}
    rows = {c for c in real if rest[c] < k} | (forced & real)
    if (
        out & {c for p in provinces_hidden for c in groups.get(p, {})}
        or rows
        or (0 < rest.get(CITY_REST, 0) < k)
    ):
        members = rows | {c for p in provinces_hidden for c in groups.get(p, {})} - {CITY_REST}
        shown = sorted(real - rows, key=_order(rest))
        while len(members) < 2 and shown:
            rows.add(shown[0])
            members.add(shown.pop(0))
        if len(members) == 1:
            need.add(0)
    return out | rows, need


def _city_bucket(provinces_hidden: set[int]) -> Callable[[int], int]:
    def bucket(c: int) -> int:
        p = province_of_city(c)
        return CITY_REST if p in provinces_hidden or p in _NO_PROVINCE else p * 100 + 99

    return bucket


def _regions(act: AudienceCounts, new: AudienceCounts, k: int, a: AudienceCounts,
             n: AudienceCounts) -> None:  # fmt: skip
    forced: set[int] = set()
    while True:
        hp_a = hidden(act.ids["province"], k, forced, 99)
        hp_n = hidden(new.ids["province"], k, forced | hp_a, 99)
        hc_a, need_a = _cities(act.ids["city"], k, hp_a, set())
        hc_n, need_n = _cities(new.ids["city"], k, hp_n, hc_a)
        need = need_a | need_n
        if 0 in need:  # the 9999 row needs a second real row: fold the smallest province
            need.discard(0)
            spare = sorted(
                (p for p, c in act.ids["province"].items()
                 if c > 0 and p not in hp_a and p not in _NO_PROVINCE and p not in need),
                key=_order(act.ids["province"]),
            )  # fmt: skip
            need |= set(spare[:1])
            if not spare:  # nothing left to fold with: fold every city
                hc_a = {c for c, v in act.ids["city"].items() if v > 0}
                hc_n = {c for c, v in new.ids["city"].items() if v > 0}
                hp_a, hp_n = set(act.ids["province"]), set(new.ids["province"])
                need = set()
        if not need - forced:
            break
        forced |= need
    a.ids["province"] = fold(act.ids["province"], hp_a, lambda _: 99)
    n.ids["province"] = fold(new.ids["province"], hp_n, lambda _: 99)
    a.ids["city"] = fold(act.ids["city"], hc_a, _city_bucket(hp_a))
    n.ids["city"] = fold(new.ids["city"], hc_n, _city_bucket(hp_n))


def _const(bucket: int) -> Callable[[int], int]:
    return lambda _: bucket


def protect(counts: PortraitCounts, k: int) -> PortraitCounts:
    """The counts as a protected app shows them (k <= 1 changes nothing)."""
    if k <= 1:
        return counts
    act, new = counts.active, counts.new
    a, n = AudienceCounts(), AudienceCounts()
    for dim in ("genders", "platforms", "ages"):
        bucket = OTHER_ID[dim]
        h_a = hidden(act.ids[dim], k, set(), bucket)
        h_n = hidden(new.ids[dim], k, h_a, bucket)
        a.ids[dim] = fold(act.ids[dim], h_a, _const(bucket))
        n.ids[dim] = fold(new.ids[dim], h_n, _const(bucket))
    d_a = hidden(act.devices, k, set(), OTHER_DEVICE)
    d_n = hidden(new.devices, k, d_a, OTHER_DEVICE)
    a.devices = fold(act.devices, d_a, lambda _: OTHER_DEVICE)
    n.devices = fold(new.devices, d_n, lambda _: OTHER_DEVICE)
    _regions(act, new, k, a, n)
    return PortraitCounts(new=n, active=a)


def check_segment(query: PortraitQuery, users: int) -> None:
    """A filtered answer of a protected app needs at least k active users in its segment:
    below that the segment itself is a small count (docs/privacy.md)."""
    k = query.threshold
    if k is None or k <= 1 or not query.filters or users >= k:
        return
    window = f"{yyyymmdd(query.begin)}-{yyyymmdd(query.end)}"
    raise SegmentTooSmall(
        f"the segment {filter_text(query.filters)} has fewer than {k} active users in "
        f"{window} (the app's small-count threshold); widen it"
    )


def total(users: int, k: int | None) -> int | None:
    """A total as a protected app shows it: None (withheld) when between 1 and k-1."""
    if k is not None and k > 1 and 0 < users < k:
        return None
    return users


def _cross_bucket(by: tuple[Dim, Dim]) -> Cell:
    def other(dim: Dim) -> CellKey:
        if dim == "devices":
            return OTHER_DEVICE
        return CITY_REST if dim == "city" else OTHER_ID[dim]

    return other(by[0]), other(by[1])


def _cross_hidden(cells: Mapping[Cell, int], k: int, forced: set[Cell], bucket: Cell) -> set[Cell]:
    """Cells to fold: those below k (and ``forced``), then complementary cells until at
    least two real cells fold and no line (the cells sharing one value of either dim, whose
    sum is a row of the plain portrait) has exactly one folded cell, so "that row minus its
    shown cells" isolates nothing. A cell of k or more alone in a line is public (it is
    that row of the plain portrait), so it never serves as a complement; when no complement
    is left, every cell folds."""
    real = {c for c, n in cells.items() if n > 0 and c != bucket}
    out = {c for c in real if cells[c] < k} | (forced & real)
    if not out and not 0 < cells.get(bucket, 0) < k:
        return out
    lines: dict[tuple[int, CellKey], set[Cell]] = {}
    for c in real:
        for side in (0, 1):
            lines.setdefault((side, c[side]), set()).add(c)
    public = {c for c in real - out if any(len(lines[(s, c[s])]) == 1 for s in (0, 1))}
    order = _order(cells)

    def smallest(among: set[Cell]) -> Cell | None:
        free = sorted(among - out - public, key=order)
        return free[0] if free else None

    while len(out) < 2:
        extra = smallest(real)
        if extra is None:
            return real
        out.add(extra)
    while True:
        grow: set[Cell] = set()
        for members in lines.values():
            if len(members & out) == 1 and len(members) > 1:
                extra = smallest(members)
                if extra is None:
                    return real
                grow.add(extra)
        if not grow:
            return out
        out |= grow


def protect_cross(counts: CrossCounts, k: int, by: tuple[Dim, Dim]) -> CrossCounts:
    """A cross-tab as a protected app shows it: cells below k fold into one 其他 cell
    (both keys 其他), with the complementary cells of ``_cross_hidden``; new users hide at
    least what active users hide."""
    if k <= 1:
        return counts
    bucket = _cross_bucket(by)
    h_a = _cross_hidden(counts.active, k, set(), bucket)
    h_n = _cross_hidden(counts.new, k, h_a, bucket)
    return CrossCounts(
        new=fold(counts.new, h_n, lambda _: bucket),
        active=fold(counts.active, h_a, lambda _: bucket),
    )
