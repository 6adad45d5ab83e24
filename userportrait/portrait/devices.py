"""Device and platform from what the client reports (docs/ingest.md), defined once for every path.

An event may carry, besides ``device`` and ``platform``, the fields of
``wx.getSystemInfoSync()`` (``model``, ``brand``, ``system``) and the ``User-Agent`` of a
``wx.request`` (``user_agent``). The rules (docs/ingest.md#device-and-platform):

* ``device`` given wins (trimmed, as before); else ``model`` normalised so that one phone
  is one row (``model_name``); else the model in an Android UA (``; MODEL Build/``), or
  ``iPhone`` / ``iPad`` for an Apple UA; ``brand`` ``devtools`` (the simulator) is the
  device ``devtools`` whatever model it imitates.
* ``platform`` given wins (``normalize.normalize_platform``); else ``brand`` ``devtools``
  is 6 其他 (the simulator reports the system of the phone it imitates); else from
  ``system``; else from the UA (``MiniProgramEnv/…`` first, then the system it names);
  else absent. A ``system`` that names no known system, and no UA that does, is 其他.

A UA is long and nearly unique per device (build, WeChat and WebView versions, a web id),
so ingest keeps and maps only its *compact form* (``compact_user_agent``): the first
parenthesised comment and the environment marks, which hold everything the rules read.
Bulk ingest computes it in SQL from ``UA_COMMENT_PATTERN`` and ``UA_MARK_PATTERN``
(``ingest/value_maps.ua_compact_sql``); ``tests/portrait/test_devices.py`` checks that
the rules give the same answer on a full UA and on its compact form.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

from userportrait.portrait.normalize import normalize_platform

#: The event fields this module reads besides ``device`` and ``platform``.
CLIENT_FIELDS: Final = ("model", "brand", "system", "user_agent")
#: Up to the UA's first parenthesised comment: ``Mozilla/5.0 (Linux; Android 13; …; wv)``
#: (anchored, so that SQL's replace-all and Python's first match remove the same text).
UA_COMMENT_PATTERN: Final = r"^[^(]*\(([^()]*)\)"
#: Marks after the comment that say where the mini program runs.
UA_MARK_PATTERN: Final = r"MiniProgramEnv/[A-Za-z]+|OpenHarmony|ArkWeb|HarmonyOS"
#: How much of the comment and how many marks are kept (a real comment is under 80).
UA_COMMENT_CHARS: Final = 200
UA_MARKS: Final = 3

_COMMENT_RE: Final = re.compile(UA_COMMENT_PATTERN)
_MARK_RE: Final = re.compile(UA_MARK_PATTERN)

# iPhone hardware identifiers -> Apple's names (Apple's support article HT201296 and
# each model's tech specs; WeChat sends ``name<identifier>``). iPads, iPods and Macs go
# through the Matomo table below.
_IPHONES: Final[dict[str, str]] = {
    "iPhone1,1": "iPhone", "iPhone1,2": "iPhone 3G", "iPhone2,1": "iPhone 3GS",
    "iPhone3,1": "iPhone 4", "iPhone3,2": "iPhone 4", "iPhone3,3": "iPhone 4",
    "iPhone4,1": "iPhone 4S", "iPhone5,1": "iPhone 5", "iPhone5,2": "iPhone 5",
    "iPhone5,3": "iPhone 5c", "iPhone5,4": "iPhone 5c",
    "iPhone6,1": "iPhone 5s", "iPhone6,2": "iPhone 5s",
    "iPhone7,2": "iPhone 6", "iPhone7,1": "iPhone 6 Plus",
    "iPhone8,1": "iPhone 6s", "iPhone8,2": "iPhone 6s Plus", "iPhone8,4": "iPhone SE",
    "iPhone9,1": "iPhone 7", "iPhone9,3": "iPhone 7",
    "iPhone9,2": "iPhone 7 Plus", "iPhone9,4": "iPhone 7 Plus",
    "iPhone10,1": "iPhone 8", "iPhone10,4": "iPhone 8",
    "iPhone10,2": "iPhone 8 Plus", "iPhone10,5": "iPhone 8 Plus",
    "iPhone10,3": "iPhone X", "iPhone10,6": "iPhone X",
    "iPhone11,2": "iPhone XS", "iPhone11,4": "iPhone XS Max", "iPhone11,6": "iPhone XS Max",
    "iPhone11,8": "iPhone XR",
    "iPhone12,1": "iPhone 11", "iPhone12,3": "iPhone 11 Pro", "iPhone12,5": "iPhone 11 Pro Max",
    "iPhone12,8": "iPhone SE (2nd generation)",
    "iPhone13,1": "iPhone 12 mini", "iPhone13,2": "iPhone 12",
    "iPhone13,3": "iPhone 12 Pro", "iPhone13,4": "iPhone 12 Pro Max",
    "iPhone14,4": "iPhone 13 mini", "iPhone14,5": "iPhone 13",
    "iPhone14,2": "iPhone 13 Pro", "iPhone14,3": "iPhone 13 Pro Max",
    "iPhone14,6": "iPhone SE (3rd generation)",
    "iPhone14,7": "iPhone 14", "iPhone14,8": "iPhone 14 Plus",
    "iPhone15,2": "iPhone 14 Pro", "iPhone15,3": "iPhone 14 Pro Max",
    "iPhone15,4": "iPhone 15", "iPhone15,5": "iPhone 15 Plus",
    "iPhone16,1": "iPhone 15 Pro", "iPhone16,2": "iPhone 15 Pro Max",
    "iPhone17,3": "iPhone 16", "iPhone17,4": "iPhone 16 Plus",
    "iPhone17,1": "iPhone 16 Pro", "iPhone17,2": "iPhone 16 Pro Max", "iPhone17,5": "iPhone 16e",
    "iPhone18,3": "iPhone 17", "iPhone18,4": "iPhone Air",
    "iPhone18,1": "iPhone 17 Pro", "iPhone18,2": "iPhone 17 Pro Max",
}  # fmt: skip

#: ``iPhone 13<iPhone14,5>``: WeChat's name, then the hardware identifier.
_NAME_AND_ID: Final = re.compile(r"(?P<name>[^<>]*)<(?P<id>[^<>]*)>")
#: A hardware identifier alone: ``iPhone14,5``, ``iPad13,18``, ``MacBookPro18,1``.
_HARDWARE_ID: Final = re.compile(r"[A-Za-z]+\d+,\d+")
#: Radio variants Apple lists as separate identifiers of one phone.
_RADIO_VARIANT: Final = re.compile(
    r"\s*\((?:GSM|CDMA|GSM\+CDMA|Global|China|CDMA\+GSM|Verizon|AT&T)\)", re.IGNORECASE
)
#: Lines sold under their own name: no maker prefix (``Redmi K40``, not ``Xiaomi Redmi K40``).
_OWN_NAMES: Final = ("honor", "redmi", "poco", "iqoo", "realme", "oneplus", "iphone", "ipad")
#: ``; MODEL Build/`` in an Android UA comment (``Linux; Android 13; 22081212C Build/TKQ1…``).
_UA_MODEL: Final = re.compile(r";\s*([^;]+?)\s+Build/")
_SYSTEMS: Final = (
    (re.compile(r"(?i)\b(?:iphone\s*os|ios|ipados)\b"), 1),
    (re.compile(r"(?i)\b(?:openharmony|harmonyos|harmony|ohos)\b"), 3),
    (re.compile(r"(?i)\bandroid\b"), 2),
    (re.compile(r"(?i)\bwindows\b"), 4),
    (re.compile(r"(?i)\b(?:macos|mac\s*os\s*x|os\s*x)\b"), 5),
)
#: The UA, in order: where WeChat says the mini program runs, then the system it names.
_UA_PLATFORMS: Final = (
    (re.compile(r"MiniProgramEnv/android\b", re.IGNORECASE), 2),
    (re.compile(r"MiniProgramEnv/(?:ohos|harmony)", re.IGNORECASE), 3),
    (re.compile(r"MiniProgramEnv/Windows\b", re.IGNORECASE), 4),
    (re.compile(r"MiniProgramEnv/Mac\b", re.IGNORECASE), 5),
    (re.compile(r"MiniProgramEnv/(?:iOS|iPhone|iPad)\b", re.IGNORECASE), 1),
    (re.compile(r"OpenHarmony|ArkWeb|HarmonyOS"), 3),
    (re.compile(r"\b(?:iPhone|iPad|iPod)\b"), 1),
    (re.compile(r"\bAndroid\b"), 2),
    (re.compile(r"\bWindows\b"), 4),
    (re.compile(r"\b(?:Macintosh|Mac OS X)\b"), 5),
)
_DEVTOOLS: Final = "devtools"
_OTHER: Final = 6


def _clean(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    return text or None


def compact_user_agent(raw: str | None) -> str | None:
    """The part of a UA the rules read: ``(first comment)`` and the environment marks.

    ``Mozilla/5.0 (Linux; Android 13; 22081212C Build/TKQ1.220829.002; wv) … ABI/arm64
    MiniProgramEnv/android`` -> ``(Linux; Android 13; 22081212C Build/TKQ1.220829.002; wv)
    MiniProgramEnv/android``. Compacting a compact form changes nothing.
    """
    text = _clean(raw)
    if text is None:
        return None
    match = _COMMENT_RE.match(text)
    comment = match.group(1)[:UA_COMMENT_CHARS] if match else ""
    marks = _MARK_RE.findall(text[match.end() :] if match else text)[:UA_MARKS]
    return f"({comment})" + (" " + " ".join(marks) if marks else "")


def model_name(raw: str | None) -> str | None:
    """One name per phone model, from what ``wx.getSystemInfoSync().model`` reports.

    ``iPhone 13<iPhone14,5>`` and ``iPhone14,5`` -> ``iPhone 13`` (identifier table);
    ``iPhone X (GSM+CDMA)<iPhone10,3>`` -> ``iPhone X``; Android codes through Matomo's
    table with the maker's name in front (``M2012K11AC`` -> ``Redmi K40``, ``SM-G9910``
    -> ``Samsung Galaxy S21 5G``); anything unrecognised is kept as given.
    """
    text = _clean(raw)
    if text is None:
        return None
    match = _NAME_AND_ID.fullmatch(text)
    if match:
        ident = match.group("id").strip()
        if ident in _IPHONES:
            return _IPHONES[ident]
        text = match.group("name").strip() or ident
        if not text:
            return None
    if text in _IPHONES:
        return _IPHONES[text]
    text = _RADIO_VARIANT.sub("", text).strip()
    if text.lower().startswith(("iphone", "ipad", "ipod")) and not _HARDWARE_ID.fullmatch(text):
        return text  # already Apple's name (WeChat's part before <…>)
    return _matomo_name(text) or text


#: How many of the detector's regexes one alternation holds (docs/performance.md "Odd input").
_GROUP: Final = 64
#: A body that may mean something else inside an alternation (a back-reference, a group
#: called or tested by number or name, an inline flag or comment, a named group), or one
#: ``_balanced`` may misread (a POSIX class ``[:alpha:]``).
_NOT_ALONE_SAFE: Final = re.compile(r"\\[1-9gk]|\(\?(?![:=!]|<[=!])|\[:")


def _lazy(rx: Any, name: str) -> Any:
    """``pattern`` or ``flags`` of the detector's lazy regex without compiling it."""
    return object.__getattribute__(rx, name)


def _balanced(body: str) -> bool:
    """Whether every parenthesis of ``body`` closes inside it (escapes and classes skipped),
    so that ``(?:body)`` is one unit, whatever it holds."""
    depth, i, in_class = 0, 0, False
    while i < len(body):
        c = body[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            i += 2 if body[i + 1 : i + 2] == "^" else 1
            i += 1 if body[i : i + 1] == "]" else 0  # ``[]…]``, ``[^]…]``: a member
            in_class = True
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0 and not in_class


@functools.cache
def _regex_groups(fixture_files: tuple[str, ...]) -> tuple[tuple[Any, range], ...]:
    """The detector's regexes of ``fixture_files`` (a parser's list), in order, in groups of
    up to ``_GROUP`` consecutive ones, each group with one regex that matches a text iff
    one of its members does (None for a group of one: its member is tried). The library writes
    each as ``BOUNDED_REGEX.format(body)``; a group is ``prefix(?:(?:body1)|(?:body2)|…)``
    (the bounding prefix tried once per position, not once per member: 8x faster than the
    members' searches, where a plain alternation of whole patterns is not faster at all),
    compiled with the members' flags by the library's engine ``regex``. A member whose body
    is not one plain unit (unbalanced, back-references, inline flags, …) is a group alone."""
    import regex  # type: ignore[import-untyped]
    from device_detector.settings import BOUNDED_REGEX
    from device_detector.yaml_loader import regex_list

    head, tail = BOUNDED_REGEX.split("{}")
    head, opening = head[: -len("(?:")], "(?:"
    assert BOUNDED_REGEX == head + opening + "{}" + tail and tail == ")"
    entries = regex_list(fixture_files)

    def body(i: int) -> str | None:
        pattern: str = _lazy(entries[i]["regex"], "pattern")
        if not (pattern.startswith(head + opening) and pattern.endswith(tail)):
            return None
        inner = pattern[len(head) + len(opening) : -len(tail)]
        ok = _balanced(inner) and _NOT_ALONE_SAFE.search(inner) is None
        return inner if ok else None

    groups: list[tuple[Any, range]] = []
    members: list[tuple[int, str]] = []

    def close() -> None:
        if members:
            flags = _lazy(entries[members[0][0]]["regex"], "flags")
            joined = "|".join(f"(?:{b})" for _, b in members)
            span = range(members[0][0], members[-1][0] + 1)
            groups.append((regex.compile(f"{head}(?:{joined})", flags), span))
            members.clear()

    for i in range(len(entries)):
        inner = body(i)
        flags = _lazy(entries[i]["regex"], "flags")
        if members and (
            inner is None
            or len(members) == _GROUP
            or flags != _lazy(entries[members[0][0]]["regex"], "flags")
        ):
            close()
        if inner is None:
            groups.append((None, range(i, i + 1)))
        else:
            members.append((i, inner))
    close()
    return tuple(groups)


def first_match(fixture_files: tuple[str, ...], text: str) -> int | None:
    """The index of the first of the detector's regexes of ``fixture_files`` that ``text``
    matches (``search``, as the detector tries them in order), None if none does."""
    entries = None
    for combined, span in _regex_groups(fixture_files):
        if combined is not None and combined.search(text) is None:
            continue
        if entries is None:
            from device_detector.yaml_loader import regex_list

            entries = regex_list(fixture_files)
        for i in span:
            if entries[i]["regex"].search(text) is not None:
                return i
    return None


@functools.cache
def _detector() -> Any:
    """Matomo's ``DeviceDetector`` whose parsers' regex loops start at ``first_match``'s
    answer: the same answer as the library's (``tests/portrait/test_devices.py`` compares
    them), without trying ~2,900 regexes one by one for a model no brand knows (12.8 ms
    each, of which the device parser's 2,043 brand regexes take 9)."""
    from device_detector import DeviceDetector  # 0.04 s, and its tables load on first use
    from device_detector.parser.device.device import Device
    from device_detector.parser.parser import Parser
    from device_detector.yaml_loader import RegexLoader

    @property  # type: ignore[misc]
    def first_only(self: Any) -> list[dict[str, Any]]:
        # The loops of ``Parser._parse`` and ``Device._parse`` stop at the first regex
        # the UA matches; with client hints the device loop reads on (not used here).
        entries: list[dict[str, Any]] = RegexLoader.regex_list.fget(self)
        if self.client_hints is not None:
            return entries
        found = first_match(self.fixture_files, self.user_agent)
        return [] if found is None else entries[found : found + 1]

    def fast(parser: type) -> type:
        if (
            parser.regex_list is not RegexLoader.regex_list  # type: ignore[attr-defined]
            or parser._parse not in (Parser._parse, Device._parse)  # type: ignore[attr-defined]
            or not parser.fixture_files  # type: ignore[attr-defined]
        ):
            return parser
        # The same name: the library picks a parser's Aho-Corasick words by class name.
        return type(parser.__name__, (parser,), {"__slots__": (), "regex_list": first_only})

    return type(
        DeviceDetector.__name__,
        (DeviceDetector,),
        {
            "__slots__": (),
            "CLIENT_PARSERS": tuple(map(fast, DeviceDetector.CLIENT_PARSERS)),
            "DEVICE_PARSERS": tuple(map(fast, DeviceDetector.DEVICE_PARSERS)),
        },
    )


@functools.lru_cache(maxsize=65536)
def _matomo_name(model: str) -> str | None:
    """Matomo's device-detector on ``model`` set in an Android UA; None if it knows none."""
    ua = f"Mozilla/5.0 (Linux; Android 13; {model} Build/A; wv)"
    # check_cache=False: the library's cache would build its own class, not ours
    found = _detector()(ua, skip_bot_detection=True, check_cache=False).parse()
    name = str(found.device_model() or "").strip()
    brand = str(found.device_brand() or "").strip()
    if not name:
        return None
    if not brand or brand == "Apple" or name.lower().startswith((brand.lower(), *_OWN_NAMES)):
        return name
    return f"{brand} {name}"


def resolve_device(
    device: str | None,
    model: str | None = None,
    brand: str | None = None,
    user_agent: str | None = None,
) -> str | None:
    """The device name of an event (rules in the module docstring); None when absent."""
    given = _clean(device)
    if given is not None:
        return given
    if (_clean(brand) or "").lower() == _DEVTOOLS:
        return _DEVTOOLS
    name = model_name(model)
    if name is not None:
        return name
    compact = compact_user_agent(user_agent)
    if compact is None:
        return None
    found = _UA_MODEL.search(compact)
    if found and "Android" in compact:
        return model_name(found.group(1))
    for apple in ("iPhone", "iPad", "iPod"):
        if re.search(rf"\(\s*{apple}\b", compact):
            return apple  # Apple's UA names no model
    return None


def system_platform(raw: str | None) -> int | None:
    """The platform id ``system`` names (``iOS 17.0`` -> 1); 6 其他 when it names none."""
    text = _clean(raw)
    if text is None:
        return None
    for pattern, platform in _SYSTEMS:
        if pattern.search(text):
            return platform
    return _OTHER


def ua_platform(raw: str | None) -> int | None:
    """The platform id a UA shows; None when it shows none (not a mini-program client)."""
    compact = compact_user_agent(raw)
    if compact is None:
        return None
    for pattern, platform in _UA_PLATFORMS:
        if pattern.search(compact):
            return platform
    return None


def resolve_platform(
    platform: str | None,
    system: str | None = None,
    user_agent: str | None = None,
    brand: str | None = None,
) -> int | None:
    """The platform id of an event (rules in the module docstring); None when absent."""
    given = normalize_platform(platform)
    if given is not None:
        return given
    if (_clean(brand) or "").lower() == _DEVTOOLS:
        return _OTHER  # the simulator reports the system of the phone it imitates
    found = system_platform(system)
    if found is not None and found != _OTHER:
        return found
    from_ua = ua_platform(user_agent)
    return from_ua if from_ua is not None else found
