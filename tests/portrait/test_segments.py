"""Filters, cross-tabs and their small-count rules (issue 27): parsing, the segment check,
cross-tab folding, totals."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from userportrait.errors import InvalidArgs, SegmentTooSmall
from userportrait.portrait.counts import Cell, CrossCounts
from userportrait.portrait.privacy import check_segment, protect_cross, total
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.segments import matches, parse_by, parse_compare, parse_filters

Q = PortraitQuery("wx1", dt.date(2024, 6, 6), dt.date(2024, 6, 12))


def test_parse() -> None:
    assert parse_filters(["province=44", " genders = 2 ", "devices=iPhone 15", "ages=0"]) == (
        ("province", 44), ("genders", 2), ("devices", "iPhone 15"), ("ages", 0)
    )  # fmt: skip
    assert parse_filters(["devices=未知", "city=4499", "province=99"]) == (
        ("devices", None), ("city", 4499), ("province", 99)
    )  # fmt: skip
    assert parse_by("genders, ages") == ("genders", "ages")
    assert parse_compare("previous") == "previous" and parse_compare(None) is None
    for bad in (["province=44", "province=11"], ["platforms=7"], ["ages=99"], ["city=1"],
                ["province=４４"], ["province=+44"]):  # fmt: skip
        with pytest.raises(InvalidArgs):
            parse_filters(bad)


def test_matches_is_and() -> None:
    values = {"province": 44, "genders": 2, "devices": None}
    assert matches((("province", 44), ("devices", None)), values)  # type: ignore[arg-type]
    assert not matches((("province", 44), ("genders", 1)), values)  # type: ignore[arg-type]
    assert matches((), values)  # type: ignore[arg-type]


def test_a_segment_below_k_is_refused_only_under_a_threshold() -> None:
    filtered = PortraitQuery(Q.appid, Q.begin, Q.end, 5, (("city", 4403),))
    check_segment(filtered, 5)
    with pytest.raises(SegmentTooSmall, match="city=4403 has fewer than 5 active users in "
                       "20240606-20240612"):  # fmt: skip
        check_segment(filtered, 4)
    with pytest.raises(SegmentTooSmall):
        check_segment(filtered, 0)  # an empty segment says "none" as much as a small one
    check_segment(PortraitQuery(Q.appid, Q.begin, Q.end, None, (("city", 4403),)), 1)
    check_segment(PortraitQuery(Q.appid, Q.begin, Q.end, 5), 1)  # no filter: rows fold


def test_totals_below_k_are_withheld() -> None:
    assert [total(n, 5) for n in (0, 1, 4, 5)] == [0, None, None, 5]
    assert total(3, None) == 3


def _lines(cells: set[Cell]) -> dict[tuple[int, object], set[Cell]]:
    out: dict[tuple[int, object], set[Cell]] = {}
    for c in cells:
        for side in (0, 1):
            out.setdefault((side, c[side]), set()).add(c)
    return out


@pytest.mark.parametrize("seed", range(60))
def test_cross_tab_folding(seed: int) -> None:
    """No cell below k is shown; a line never has exactly one folded cell; new users hide
    at least what active users hide; the sums stay."""
    rng = random.Random(seed)
    k = rng.choice([2, 3, 5])
    active: dict[Cell, int] = {}
    new: dict[Cell, int] = {}
    for g in range(3):
        for a in range(7):
            if rng.random() < 0.7:
                active[(g, a)] = rng.choice([1, 2, 3, 4, 6, 10, 30])
                new[(g, a)] = rng.randint(0, active[(g, a)])
    out = protect_cross(CrossCounts(new=new, active=active), k, ("genders", "ages"))
    bucket = (99, 99)
    hidden_active = {c for c, n in active.items() if n and c not in out.active}
    for shown, exact in ((out.active, active), (out.new, new)):
        assert sum(shown.values()) == sum(exact.values())
        folded = {c for c, n in exact.items() if n and c not in shown}
        assert all(n >= k for c, n in shown.items() if c != bucket)
        assert all(n == exact[c] for c, n in shown.items() if c != bucket)
        if folded:
            assert len(folded) >= 2
        real = {c for c, n in exact.items() if n}
        lines = _lines(real)
        for line, members in lines.items():
            assert len(members & folded) != 1 or len(members) == 1, (line, members, folded)
        if folded != real:  # a complement alone in a line would be that row of the portrait
            for c in folded:
                alone = any(len(lines[(s, c[s])]) == 1 for s in (0, 1))
                assert not (alone and exact[c] >= k) or c in hidden_active, (c, folded)
    assert all(c not in out.new for c in hidden_active if new.get(c))


def test_cross_tab_devices_fold_into_a_named_cell() -> None:
    active: dict[Cell, int] = {("iPhone 15", 1): 9, ("Mate 60", 2): 1, (None, 2): 9, ("P70", 2): 1}
    out = protect_cross(CrossCounts(active=active), 5, ("devices", "platforms"))
    assert out.active[("其他", 6)] >= 2 and ("Mate 60", 2) not in out.active
