"""The CSV record grammar of the bulk ingest, written once for ``ingest`` and ``spark ingest``.

``ingest`` reads CSV with DuckDB's strict reader, which decides which rows are broken;
``spark ingest`` reads lines as text and splits them with ``field_pattern`` (Java and
Python read the same regular expression), so both accept and reject the same rows. The
grammar is DuckDB's: a field is quoted (``"``, ``""`` for a quote, one space allowed
before it and any after, a newline allowed inside) or unquoted (anything but the delimiter, a quote
allowed after its first character); an empty field is NULL; fields past the header's
width are allowed when empty (a trailing delimiter). ``row_reason`` words a broken row
the same way for both readers (the ``Reject`` reasons of ``portrait/rules.py``), with its
real number of fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from userportrait.portrait.rules import Reject

#: A quoted field: DuckDB's strict reader allows one space before it and any after.
QUOTED: Final = ' ?"[^"]*(?:""[^"]*)*" *'
#: What is left of a row whose last field opened a quote the row does not close: the
#: record goes on on the next line (a quoted newline), or the quote is never closed.
OPEN_QUOTE: Final = ' ?"[^"]*(?:""[^"]*)*'


def field_pattern(delim: str) -> str:
    """One field and its delimiter (match it on the row plus one delimiter); group 1 is
    the field. Anchor each match at the previous one's end (``\\G`` in Java)."""
    d = re.escape(delim)
    return f'({QUOTED}|(?! ?")[^{d}]*){d}'


def split_row(text: str, delim: str) -> tuple[list[str], bool]:
    """The raw fields of ``text`` and whether they are all of it (else a quote is broken)."""
    pattern = _compiled(delim)
    body, pos, fields = text + delim, 0, []
    while pos < len(body) and (m := pattern.match(body, pos)):
        fields.append(m.group(1))
        pos = m.end()
    return fields, pos == len(body)


def opens_quote(text: str, delim: str) -> bool:
    """Whether ``text`` ends inside a quoted field (the record goes on on the next line)."""
    fields, whole = split_row(text, delim)
    if whole:
        return False
    done = sum(len(f) + 1 for f in fields)
    return re.fullmatch(OPEN_QUOTE, text[done:]) is not None


def has_extra_values(fields: list[str], width: int) -> bool:
    """More fields than the header and one of the extra ones is not empty."""
    return any(f not in ("", '""') for f in fields[width:])


def row_reason(errors: Iterable[str], text: str | None, width: int, delim: str) -> str:
    """The reason for a row DuckDB's strict reader refused, from its error types and text."""
    kinds = set(errors)
    if "INVALID ENCODING" in kinds:
        return Reject.NOT_UTF8.text()
    if "LINE SIZE OVER MAXIMUM" in kinds:
        return Reject.LINE_TOO_LONG.text()
    if text is None or "UNQUOTED VALUE" in kinds:
        return Reject.NOT_CLOSED.text()
    fields, whole = split_row(text.removesuffix("\n").removesuffix("\r"), delim)
    if not whole:
        return Reject.NOT_CLOSED.text()
    return Reject.WRONG_WIDTH.text(fields=len(fields), width=width)


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(delim: str) -> re.Pattern[str]:
    if delim not in _PATTERNS:
        _PATTERNS[delim] = re.compile(field_pattern(delim))
    return _PATTERNS[delim]
