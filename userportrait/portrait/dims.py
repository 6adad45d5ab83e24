"""The portrait's dimensions and value tables (docs/semantics.md), defined once for all engines."""

from __future__ import annotations

from typing import Final, Literal

Dim = Literal["province", "city", "genders", "platforms", "devices", "ages"]

#: Output order of the six keys, as WeChat's documentation lists them.
DIMS: Final[tuple[Dim, ...]] = ("province", "city", "genders", "platforms", "devices", "ages")
#: Dimensions whose rows carry an integer ``id`` (devices carry only a name).
ID_DIMS: Final[tuple[Dim, ...]] = ("province", "city", "genders", "platforms", "ages")

UNKNOWN: Final = 0
UNKNOWN_NAME: Final = "未知"
OTHER_NAME: Final = "其他"
#: The 其他 row that a protected app's small genders and ages rows fold into (docs/privacy.md).
FOLDED_ID: Final = 99
TOP_DEVICES: Final = 20

GENDERS: Final[dict[int, str]] = {0: "未知", 1: "男", 2: "女"}
AGES: Final[dict[int, str]] = {
    0: "未知",
    1: "17岁以下",
    2: "18-24岁",
    3: "25-29岁",
    4: "30-39岁",
    5: "40-49岁",
    6: "50岁以上",
}
PLATFORMS: Final[dict[int, str]] = {
    0: "未知",
    1: "iPhone",
    2: "Android",
    3: "HarmonyOS",
    4: "Windows",
    5: "Mac",
    6: "其他",
}

#: Upper bound (inclusive) of each age bucket, in years.
AGE_BUCKET_UPPER: Final[tuple[tuple[int, int], ...]] = ((17, 1), (24, 2), (29, 3), (39, 4), (49, 5))
MAX_AGE: Final = 150


def age_bucket(age: int) -> int:
    """The ``ages`` id of an age in years (callers have checked 0 <= age <= MAX_AGE)."""
    for upper, bucket in AGE_BUCKET_UPPER:
        if age <= upper:
            return bucket
    return 6


def value_name(dim: Dim, value_id: int) -> str:
    """The display name of an id-dimension value."""
    from userportrait.portrait import regions

    if dim == "province":
        return regions.province_name(value_id)
    if dim == "city":
        return regions.city_name(value_id)
    table: dict[int, str] = {"genders": GENDERS, "platforms": PLATFORMS, "ages": AGES}[dim]
    if value_id == FOLDED_ID and dim != "platforms":
        return OTHER_NAME
    return table[value_id]
