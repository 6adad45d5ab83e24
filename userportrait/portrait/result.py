"""Shape exact counts into WeChat's getUserPortrait success JSON (docs/api.md)."""

from __future__ import annotations

from typing import Any, Literal

from userportrait.portrait.counts import AudienceCounts, PortraitCounts
from userportrait.portrait.dims import DIMS, ID_DIMS, TOP_DEVICES, UNKNOWN_NAME, value_name
from userportrait.portrait.query import PortraitQuery, yyyymmdd

RefDateMode = Literal["range", "begin"]
Row = dict[str, Any]


def ref_date(query: PortraitQuery, mode: RefDateMode = "range") -> str:
    """``yyyymmdd`` for one day (or always, in ``begin`` mode), else ``yyyymmdd-yyyymmdd``."""
    begin = yyyymmdd(query.begin)
    if query.begin == query.end or mode == "begin":
        return begin
    return f"{begin}-{yyyymmdd(query.end)}"


def audience_rows(counts: AudienceCounts) -> dict[str, list[Row]]:
    """The six keys, rows sorted by value desc then id asc (devices: name asc, top 20)."""
    out: dict[str, list[Row]] = {}
    for dim in DIMS:
        if dim == "devices":
            named = [(UNKNOWN_NAME if k is None else k, v) for k, v in counts.devices.items() if v]
            named.sort(key=lambda kv: (-kv[1], kv[0]))
            out[dim] = [{"name": n, "value": v} for n, v in named[:TOP_DEVICES]]
        else:
            items = sorted(
                ((k, v) for k, v in counts.ids[dim].items() if v), key=lambda kv: (-kv[1], kv[0])
            )
            out[dim] = [{"id": k, "name": value_name(dim, k), "value": v} for k, v in items]
    return out


def shape(query: PortraitQuery, counts: PortraitCounts, mode: RefDateMode = "range") -> Row:
    """The WeChat success body: ``ref_date``, ``visit_uv_new``, ``visit_uv``."""
    return {
        "ref_date": ref_date(query, mode),
        "visit_uv_new": audience_rows(counts.new),
        "visit_uv": audience_rows(counts.active),
    }


def to_cloud(body: Row) -> Row:
    """The cloud-call form of a success body (camelCase, errMsg/errCode)."""
    return {
        "refDate": body["ref_date"],
        "visitUvNew": body["visit_uv_new"],
        "visitUv": body["visit_uv"],
        "errMsg": "openapi.analysis.getUserPortrait:ok",
        "errCode": 0,
    }


__all__ = ["ID_DIMS", "audience_rows", "ref_date", "shape", "to_cloud"]
