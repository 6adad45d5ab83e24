"""Portrait exports: CSV rows of a WeChat body.

Every text cell goes through ``csv_cell``: a spreadsheet runs a cell that begins with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula, and device names and
region strings come from the apps' clients. The dashboard's own CSV export
(``dashboard/static/dashboard.js``, ``csvCell``) applies the same rule;
``tests/test_dashboard_browser.py`` checks its file against this function.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Final

#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV Injection").
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value``, with a text that a spreadsheet would run as a formula prefixed by ``'``
    (OWASP's advice: the cell then shows as text, the quote hidden)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def portrait_csv(body: dict[str, Any]) -> str:
    """``ref_date,audience,dimension,id,name,value`` (compared: and ``previous``); a
    cross-tab body (``by``): ``audience,A_id,A_name,B_id,B_name,value``."""
    if "by" in body:
        return _cross_csv(body)
    compared = "previous_ref_date" in body
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["ref_date", "audience", "dimension", "id", "name", "value"]
    writer.writerow(header + ["previous"] if compared else header)
    for audience in ("visit_uv_new", "visit_uv"):
        for dim, rows in body[audience].items():
            for row in rows:
                cells = [body["ref_date"], audience, dim, row.get("id", ""), row["name"], row["value"]]  # fmt: skip
                if compared:
                    cells.append(row["previous"])
                writer.writerow([csv_cell(c) for c in cells])
    return out.getvalue()


def _cross_csv(body: dict[str, Any]) -> str:
    compared = "previous_ref_date" in body
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    a, b = body["by"]
    header = ["audience", f"{a}_id", f"{a}_name", f"{b}_id", f"{b}_name", "value"]
    writer.writerow(header + ["previous"] if compared else header)
    for audience in ("visit_uv_new", "visit_uv"):
        for row in body[audience]:
            cells: list[Any] = [audience]
            for key in row["keys"]:
                cells += [key.get("id", ""), key["name"]]
            cells.append(row["value"])
            if compared:
                cells.append(row["previous"])
            writer.writerow([csv_cell(c) for c in cells])
    return out.getvalue()
