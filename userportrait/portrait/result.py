"""Shape exact counts into WeChat's getUserPortrait success JSON (docs/api.md)."""

from __future__ import annotations

from typing import Any, Literal

from userportrait.portrait.counts import AudienceCounts, Cell, CellKey, CrossCounts, PortraitCounts
from userportrait.portrait.dims import DIMS, ID_DIMS, TOP_DEVICES, UNKNOWN_NAME, Dim, value_name
from userportrait.portrait.privacy import total
from userportrait.portrait.query import PortraitQuery, yyyymmdd

RefDateMode = Literal["range", "begin"]
Row = dict[str, Any]


def ref_date(query: PortraitQuery, mode: RefDateMode = "range") -> str:
    """``yyyymmdd`` for one day (or always, in ``begin`` mode), else ``yyyymmdd-yyyymmdd``."""
    begin = yyyymmdd(query.begin)
    if query.begin == query.end or mode == "begin":
        return begin
    return f"{begin}-{yyyymmdd(query.end)}"


def audience_rows(
    counts: AudienceCounts, previous: AudienceCounts | None = None
) -> dict[str, list[Row]]:
    """The six keys, rows sorted by value desc then id asc (devices: name asc, top 20);
    with ``previous``, each row also has its value there (0 where absent)."""
    out: dict[str, list[Row]] = {}
    for dim in DIMS:
        if dim == "devices":
            named = [
                (UNKNOWN_NAME if k is None else k, k, v) for k, v in counts.devices.items() if v
            ]
            named.sort(key=lambda kv: (-kv[2], kv[0]))
            out[dim] = [{"name": n, "value": v} for n, _, v in named[:TOP_DEVICES]]
            if previous is not None:
                for row, (_, k, _) in zip(out[dim], named, strict=False):
                    row["previous"] = previous.devices.get(k, 0)
        else:
            items = sorted(
                ((k, v) for k, v in counts.ids[dim].items() if v), key=lambda kv: (-kv[1], kv[0])
            )
            out[dim] = [{"id": k, "name": value_name(dim, k), "value": v} for k, v in items]
            if previous is not None:
                for row in out[dim]:
                    row["previous"] = previous.ids[dim].get(row["id"], 0)
    return out


def audience_total(counts: AudienceCounts) -> int:
    """The audience's users: every user has exactly one value per dimension (未知 too)."""
    return sum(counts.ids["genders"].values())


def shape(
    query: PortraitQuery,
    counts: PortraitCounts,
    mode: RefDateMode = "range",
    previous: PortraitCounts | None = None,
) -> Row:
    """The WeChat success body: ``ref_date``, ``visit_uv_new``, ``visit_uv``; compared
    with ``previous`` (``query.previous()``'s counts): ``previous`` on every row,
    ``previous_ref_date`` and ``totals``."""
    body: Row = {
        "ref_date": ref_date(query, mode),
        "visit_uv_new": audience_rows(counts.new, None if previous is None else previous.new),
        "visit_uv": audience_rows(counts.active, None if previous is None else previous.active),
    }
    if previous is not None:
        body["previous_ref_date"] = previous_ref_date(query)
        body["totals"] = {
            "visit_uv": _total(
                audience_total(counts.active), audience_total(previous.active), query
            ),
            "visit_uv_new": _total(audience_total(counts.new), audience_total(previous.new), query),
        }
    return body


def previous_ref_date(query: PortraitQuery) -> str:
    """``yyyymmdd-yyyymmdd`` of the window before, a one-day window too (the native API's
    contract; ``ref_date`` follows WeChat)."""
    before = query.previous()
    return f"{yyyymmdd(before.begin)}-{yyyymmdd(before.end)}"


def _total(value: int, previous: int, query: PortraitQuery) -> Row:
    return {"value": total(value, query.threshold), "previous": total(previous, query.threshold)}


def cell_key(dim: Dim, value: CellKey) -> Row:
    """One key of a cross-tab row: ``{"id", "name"}`` (devices: ``{"name"}``)."""
    if dim == "devices":
        return {"name": UNKNOWN_NAME if value is None else value}
    vid = int(value or 0)
    return {"id": vid, "name": value_name(dim, vid)}


def cross_rows(
    by: tuple[Dim, Dim], cells: dict[Cell, int], previous: dict[Cell, int] | None = None
) -> list[Row]:
    """Rows ``{"keys": [key, key], "value"}`` sorted by value desc, then by the keys' ids
    (devices: names)."""

    def order(item: tuple[Cell, int]) -> tuple[Any, ...]:
        (a, b), v = item
        return (-v, *(k.get("id", k["name"]) for k in (cell_key(by[0], a), cell_key(by[1], b))))

    rows = []
    for (a, b), v in sorted(((c, v) for c, v in cells.items() if v), key=order):
        row: Row = {"keys": [cell_key(by[0], a), cell_key(by[1], b)], "value": v}
        if previous is not None:
            row["previous"] = previous.get((a, b), 0)
        rows.append(row)
    return rows


def shape_cross(
    query: PortraitQuery,
    counts: CrossCounts,
    mode: RefDateMode = "range",
    previous: CrossCounts | None = None,
) -> Row:
    """The cross-tab body: ``ref_date``, ``by``, ``visit_uv_new``, ``visit_uv`` (rows of
    ``cross_rows``); compared as ``shape`` is."""
    assert query.by is not None
    body: Row = {
        "ref_date": ref_date(query, mode),
        "by": list(query.by),
        "visit_uv_new": cross_rows(
            query.by, counts.new, None if previous is None else previous.new
        ),
        "visit_uv": cross_rows(
            query.by, counts.active, None if previous is None else previous.active
        ),
    }
    if previous is not None:
        body["previous_ref_date"] = previous_ref_date(query)
        body["totals"] = {
            "visit_uv": _total(sum(counts.active.values()), sum(previous.active.values()), query),
            "visit_uv_new": _total(sum(counts.new.values()), sum(previous.new.values()), query),
        }
    return body


def to_cloud(body: Row) -> Row:
    """The cloud-call form of a success body (camelCase, errMsg/errCode)."""
    return {
        "refDate": body["ref_date"],
        "visitUvNew": body["visit_uv_new"],
        "visitUv": body["visit_uv"],
        "errMsg": "openapi.analysis.getUserPortrait:ok",
        "errCode": 0,
    }


__all__ = ["ID_DIMS", "audience_rows", "cross_rows", "ref_date", "shape", "shape_cross", "to_cloud"]
