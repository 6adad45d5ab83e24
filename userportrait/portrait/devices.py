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

import contextlib
import functools
import os
import re
import threading
from pathlib import Path
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
#: ``regex.IGNORECASE`` (the only flag the detector's regexes carry), without importing it.
_IGNORECASE: Final = 2
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


#: Escapes and ``(?`` forms that mean the same to the library's engine ``regex`` and to
#: Hyperscan's PCRE syntax on printable ASCII text: a pattern with any other (``\\u``,
#: ``\\p``, ``\\x``, inline flags, a brace other than ``{n}``, ``{n,}``, ``{n,m}`` (the
#: engines differ on ``{,n}``), a POSIX class, non-ASCII) is tried always.
_HS_SAFE_ESCAPE: Final = re.compile(r"\\(?:[dDwWsSbB]|[^0-9A-Za-z])")
_HS_UNSAFE: Final = re.compile(r"\{(?!\d+(?:,\d*)?\})|\[:|\(\?(?!:|=|!|<=|<!)")


class _Prefilter:
    """Hyperscan's database of regexes in prefilter mode: a scan of a text reports every
    regex that may match it (a superset, never fewer), so that only those are tried, in
    order, by the real engine. Regexes it cannot vouch for are tried always."""

    __slots__ = ("_database", "_entries", "_lock", "_scratch", "_always", "spans")

    def __init__(
        self, database: Any, entries: list[Any], spans: list[range], always: frozenset[int]
    ) -> None:
        import hyperscan

        self._database = database
        self._entries = entries
        #: Where each list's regexes are in the numbering.
        self.spans = spans
        self._scratch = hyperscan.Scratch(database)
        self._lock = threading.Lock()  # a scratch serves one scan at a time
        self._always = always

    def first(self, text: str, span: range) -> int | None:
        """The index of the first regex of ``span`` that ``text`` matches (printable ASCII
        only), counted from the span's start."""
        found = set(self._always)

        def hit(index: int, start: int, end: int, flags: int, context: object) -> None:
            found.add(index)

        with self._lock:
            self._database.scan(text.encode("ascii"), hit, scratch=self._scratch)
        for i in sorted(found):
            if i in span and self._entries[i].search(text) is not None:
                return i - span.start
        return None


def _cache_dir() -> Path:
    """Where compiled prefilters are kept across processes (a compile takes seconds)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "userportrait"


def _compile(compiled: list[tuple[bytes, int, int]], always: set[int]) -> Any:
    """Hyperscan's database of ``compiled`` (pattern, flags, id); the ids of the patterns
    it refuses are added to ``always``."""
    import hyperscan

    database = hyperscan.Database()
    try:
        database.compile(
            expressions=[c[0] for c in compiled],
            flags=[c[1] for c in compiled],
            ids=[c[2] for c in compiled],
        )
    except hyperscan.error:
        # The error does not say which: find the ones Hyperscan refuses, one by one.
        kept = []
        for c in compiled:
            try:
                hyperscan.Database().compile(expressions=[c[0]], flags=[c[1]], ids=[c[2]])
                kept.append(c)
            except hyperscan.error:
                always.add(c[2])
        database.compile(
            expressions=[c[0] for c in kept], flags=[c[1] for c in kept], ids=[c[2] for c in kept]
        )
    return database


@functools.cache
def _prefilter(lists: tuple[tuple[str, ...], ...]) -> _Prefilter | None:
    """The prefilter of the detector's regexes of ``lists`` (each a parser's fixture files),
    numbered in order across them; None without the ``hyperscan`` module (``first_match``
    then takes the groups, also exact). The library writes each regex as
    ``BOUNDED_REGEX.format(body)``: where the body is one unit, only the body is compiled
    (the whole matches only where the body does; 2x faster to compile)."""
    try:
        import hyperscan
    except ImportError:  # pragma: no cover - a main dependency
        return None
    import hashlib
    import importlib.metadata

    from device_detector.settings import BOUNDED_REGEX
    from device_detector.yaml_loader import regex_list

    head, tail = BOUNDED_REGEX.split("{}")
    base = hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_SINGLEMATCH
    base |= hyperscan.HS_FLAG_ALLOWEMPTY
    entries = [entry["regex"] for files in lists for entry in regex_list(files)]
    spans, start = [], 0
    for files in lists:
        spans.append(range(start, start + len(regex_list(files))))
        start = spans[-1].stop
    compiled: list[tuple[bytes, int, int]] = []
    always: set[int] = set()
    for i, rx in enumerate(entries):
        pattern: str = _lazy(rx, "pattern")
        flags: int = _lazy(rx, "flags")
        inner = pattern[len(head) : -len(tail)]
        if pattern.startswith(head) and pattern.endswith(tail) and _balanced(inner):
            pattern = inner
        if (
            not pattern.isascii()
            or _HS_UNSAFE.search(pattern)
            or flags & ~_IGNORECASE
            or any(not _HS_SAFE_ESCAPE.fullmatch(e) for e in re.findall(r"(?s)\\.", pattern))
        ):
            always.add(i)
            continue
        caseless = hyperscan.HS_FLAG_CASELESS if flags & _IGNORECASE else 0
        compiled.append((pattern.encode("ascii"), base | caseless, i))
    version = importlib.metadata.version("hyperscan")
    key = hashlib.sha256(repr((version, compiled, sorted(always))).encode())
    path = _cache_dir() / f"matomo-prefilter-{key.hexdigest()[:20]}.hs"
    try:
        # ids Hyperscan refused, a line, then the database (it checks its own CRC)
        refused, _, blob = path.read_bytes().partition(b"\n")
        database = hyperscan.loadb(blob, hyperscan.HS_MODE_BLOCK)
        always.update(int(i) for i in refused.split())
    except (OSError, ValueError, hyperscan.error):
        database = _compile(compiled, always)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            refused = " ".join(str(c[2]) for c in compiled if c[2] in always).encode()
            temporary.write_bytes(refused + b"\n" + hyperscan.dumpb(database))
            temporary.replace(path)
    return _Prefilter(database, entries, spans, frozenset(always))


@functools.cache
def _prefiltered_lists() -> tuple[tuple[str, ...], ...] | None:
    """The lists that go through one prefilter: the device parsers' that name a model
    (``_model_lists``), then the OS parser's. The client parsers' keep the groups
    (their regexes start ``^`` inside the bound, which Hyperscan refuses, and the model
    names never read them)."""
    from device_detector.parser.operating_system import OS

    lists = _model_lists()
    return None if lists is None else (*lists, OS.fixture_files)


def _printable_ascii(text: str) -> bool:
    # There ``\\d``, ``\\s``, ``\\w``, ``$`` and case mean the same to both engines (not on
    # all of Unicode: ``\\s`` takes ``\\x1c``, case folds ``K`` (Kelvin sign) to ``k``).
    return text.isascii() and text.isprintable()


#: New models a process resolves by the groups before it loads the prefilter (compiling it,
#: once per machine, takes 3-8 s; loading it 0.3 s): a process that meets a few new models
#: (a demo, a day's ingest) never pays that, a flood of them pays it once.
PREFILTER_AFTER: Final = 256
_resolved = 0  # models ``_matomo_name`` worked out in this process (a race only delays it)


def _prefilter_if_due(lists: tuple[tuple[str, ...], ...]) -> _Prefilter | None:
    return _prefilter(lists) if _resolved >= PREFILTER_AFTER else None


def first_match(fixture_files: tuple[str, ...], text: str) -> int | None:
    """The index of the first of the detector's regexes of ``fixture_files`` that ``text``
    matches (``search``, as the detector tries them in order), None if none does."""
    lists = _prefiltered_lists()
    if lists is not None and fixture_files in lists and _printable_ascii(text):
        prefilter = _prefilter_if_due(lists)
        if prefilter is not None:
            return prefilter.first(text, prefilter.spans[lists.index(fixture_files)])
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
    from device_detector.parser.operating_system import OS
    from device_detector.parser.parser import Parser
    from device_detector.yaml_loader import RegexLoader

    @property  # type: ignore[misc]
    def first_only(self: Any) -> list[dict[str, Any]]:
        # The loops of ``Parser._parse`` and ``Device._parse`` stop at the first regex
        # the UA matches (``OS._parse`` is ``Parser._parse``, then a fragment check when
        # none does); with client hints the device loop reads on (not used here).
        entries: list[dict[str, Any]] = RegexLoader.regex_list.fget(self)
        if self.client_hints is not None:
            return entries
        found = first_match(self.fixture_files, self.user_agent)
        return [] if found is None else entries[found : found + 1]

    def fast(parser: type) -> type:
        if (
            parser.regex_list is not RegexLoader.regex_list  # type: ignore[attr-defined]
            or parser._parse not in (Parser._parse, Device._parse, OS._parse)  # type: ignore[attr-defined]
            or not parser.fixture_files  # type: ignore[attr-defined]
        ):
            return parser
        # The same name: the library picks a parser's Aho-Corasick words by class name.
        return type(parser.__name__, (parser,), {"__slots__": (), "regex_list": first_only})

    fast_os = fast(OS)

    def parse_os(self: Any) -> None:
        # ``DeviceDetector.parse_os`` with the fast OS parser.
        if not self.os:
            found = fast_os(self.user_agent, self.client_hints).parse()
            if found:
                self.os = found
                self.all_details["os"] = found.ua_data

    return type(
        DeviceDetector.__name__,
        (DeviceDetector,),
        {
            "__slots__": (),
            "CLIENT_PARSERS": tuple(map(fast, DeviceDetector.CLIENT_PARSERS)),
            "DEVICE_PARSERS": tuple(map(fast, DeviceDetector.DEVICE_PARSERS)),
            "parse_os": parse_os,
        },
    )


@functools.cache
def _model_detector() -> Any:
    """``_detector()`` without the client parsers (browsers, apps: 1/4 of its time): no
    device parser reads their answer, only ``is_television`` (the device *type*), so the
    device's model and brand are the library's (``tests/portrait/test_devices.py``)."""
    detector = _detector()

    def parse_client(self: Any) -> None:
        return None

    return type(detector.__name__, (detector,), {"__slots__": (), "parse_client": parse_client})


@functools.cache
def _model_lists() -> tuple[tuple[str, ...], ...] | None:
    """The regex lists of the device parsers that can name a model, when the library's
    device parsers are the ones ``_finds_no_model`` knows (None otherwise)."""
    from device_detector import DeviceDetector
    from device_detector.parser.device import (
        Camera,
        CarBrowser,
        Console,
        Device,
        HbbTv,
        Notebook,
        PortableMediaPlayer,
        ShellTv,
    )
    from device_detector.parser.parser import Parser

    looped = (Console, CarBrowser, Camera, PortableMediaPlayer, Notebook, Device)
    if DeviceDetector.DEVICE_PARSERS != (HbbTv, ShellTv, *looped) or any(
        p._parse not in (Parser._parse, Device._parse, Notebook._parse) for p in looped
    ):
        return None  # pragma: no cover - another version of the library
    return tuple(p.fixture_files for p in looped)


def _finds_no_model(ua: str) -> bool:
    """Whether the detector surely finds no model in ``ua``: no device parser's regex
    matches it. A device parser names a model only from a regex of its list that matches
    (its ``model``, or one of its ``models``); the TV parsers run only on a fragment
    (``HbbTV/``, ``Shell``) and else leave the model empty; the vendor fragments, the device
    type and ``Coolita OS`` set the brand and type only. Random text is nearly always so,
    and a few prefilter scans replace the detector's ~0.3 ms (docs/performance.md)."""
    lists = _model_lists()
    if lists is None:
        return False
    from device_detector.parser.device.television import HBBTV_FRAGMENT, SHELL_TV_FRAGMENT

    if HBBTV_FRAGMENT.search(ua) is not None or SHELL_TV_FRAGMENT.search(ua) is not None:
        return False
    everything = _prefiltered_lists()
    prefilter = _prefilter_if_due(everything) if everything and _printable_ascii(ua) else None
    if prefilter is not None and everything is not None:
        # one scan for the six lists (they come first, in a row)
        span = range(0, prefilter.spans[len(lists) - 1].stop)
        return prefilter.first(ua, span) is None
    return all(first_match(files, ua) is None for files in lists)


#: The Android UA a model is read in.
_MODEL_UA: Final = "Mozilla/5.0 (Linux; Android 13; {} Build/A; wv)"


@functools.lru_cache(maxsize=65536)
def _matomo_name(model: str) -> str | None:
    """Matomo's device-detector on ``model`` set in an Android UA; None if it knows none."""
    global _resolved
    _resolved += 1
    ua = _MODEL_UA.format(model)
    if _finds_no_model(ua):
        return None
    # check_cache=False: the library's cache would build its own class, not ours
    return _name_of(_model_detector()(ua, skip_bot_detection=True, check_cache=False).parse())


def _name_of(found: Any) -> str | None:
    """The name of a detector's answer: the maker's name in front, unless the line is sold
    under its own; None without a model."""
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
