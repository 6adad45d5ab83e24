"""Raw attribute strings -> value ids (docs/semantics.md), defined once for every ingest path.

Each function takes one raw value and returns an id, or ``None`` when the attribute is
absent. Ingest applies them to the *distinct* raw values of a batch and joins the result
back, so millions of rows cost a few thousand calls.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from userportrait.portrait import regions
from userportrait.portrait.dims import MAX_AGE, age_bucket
from userportrait.portrait.query import TZ
from userportrait.portrait.rules import EPOCH_MS_FROM

_GENDERS: Final[dict[str, int]] = {
    "1": 1, "m": 1, "male": 1, "man": 1, "男": 1,
    "2": 2, "f": 2, "female": 2, "woman": 2, "女": 2,
}  # fmt: skip

_PLATFORMS: Final[dict[str, int]] = {
    "ios": 1, "iphone": 1, "ipad": 1, "ipod": 1, "iphoneos": 1, "ipados": 1,
    "android": 2,
    "ohos": 3, "harmonyos": 3, "harmony": 3, "openharmony": 3, "鸿蒙": 3,
    "windows": 4, "win": 4, "win32": 4, "win64": 4,
    "mac": 5, "macos": 5, "osx": 5, "macosx": 5, "darwin": 5,
}  # fmt: skip


def _clean(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    return text or None


def normalize_gender(raw: str | None) -> int | None:
    """1 男 / 2 女; 0, empty and unrecognised strings are absent."""
    text = _clean(raw)
    if text is None:
        return None
    if text.endswith(".0"):  # a float-typed column written as 1.0
        text = text[:-2]
    return _GENDERS.get(text.lower())


def normalize_platform(raw: str | None) -> int | None:
    """Platform id; empty is absent, anything unrecognised is 6 (其他)."""
    text = _clean(raw)
    if text is None:
        return None
    key = re.sub(r"[\s_-]+", "", text.lower())
    return _PLATFORMS.get(key, 6)


def parse_age(raw: str | None) -> int | None:
    """Age in whole years, or None when absent; ValueError names what is wrong."""
    text = _clean(raw)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"age is not a number: {text[:40]!r}") from None
    if not value.is_integer():
        raise ValueError(f"age is not a whole number: {text[:40]!r}")
    if not 0 <= value <= MAX_AGE:
        raise ValueError(f"age out of range 0..{MAX_AGE}: {text[:40]!r}")
    return int(value)


def age_id(age: int | None) -> int | None:
    return None if age is None else age_bucket(age)


def resolve_region(province_raw: str | None, city_raw: str | None) -> tuple[int | None, int | None]:
    """(province id, city id); a recognised city supplies the province when none is given."""
    pid = regions.normalize_province(province_raw)
    cid = regions.normalize_city(city_raw, pid if pid not in (None, 0) else None)
    if pid is None and cid is not None and cid % 100 != 99:
        pid = regions.province_of_city(cid)
    return pid, cid


_INT_RE: Final = re.compile(r"^[+-]?\d+$")


def parse_ts(raw: str | int | float | dt.datetime | None) -> int:
    """Epoch milliseconds of an event time; ValueError names what is wrong.

    RFC 3339 with offset, epoch seconds or milliseconds, or a naive timestamp read as
    Asia/Shanghai wall time (docs/semantics.md "Input values").
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValueError("ts is missing")
    if isinstance(raw, dt.datetime):
        moment = raw if raw.tzinfo else raw.replace(tzinfo=TZ)
        return int(moment.timestamp() * 1000)
    if isinstance(raw, bool):
        raise ValueError("ts has the wrong type: boolean")
    if isinstance(raw, int | float):
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(f"ts is not a whole number of seconds or ms: {raw!r}")
        number = int(raw)
        return number if abs(number) >= EPOCH_MS_FROM else number * 1000
    text = raw.strip()
    if _INT_RE.match(text):
        return parse_ts(int(text))
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"ts is not a timestamp: {text[:40]!r}") from None
    return parse_ts(moment)


def day_of(ts_ms: int) -> dt.date:
    """The Asia/Shanghai calendar day of an epoch-ms time."""
    return dt.datetime.fromtimestamp(ts_ms / 1000, TZ).date()
