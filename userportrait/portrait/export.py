"""Portrait exports: CSV rows of a WeChat body."""

from __future__ import annotations

import csv
import io
from typing import Any


def portrait_csv(body: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ref_date", "audience", "dimension", "id", "name", "value"])
    for audience in ("visit_uv_new", "visit_uv"):
        for dim, rows in body[audience].items():
            for row in rows:
                writer.writerow(
                    [body["ref_date"], audience, dim, row.get("id", ""), row["name"], row["value"]]
                )
    return out.getvalue()
