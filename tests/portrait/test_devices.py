"""Device and platform from real client strings (issue 17, portrait/devices.py).

The model strings are what ``wx.getSystemInfoSync().model`` reports on those phones; the
UAs are the ``User-Agent`` of ``wx.request`` as mini-program backends log them (Android
and iOS WeChat, PC and Mac WeChat) and Huawei's documented ArkWeb default.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import device_detector
import duckdb
import pytest
from device_detector import DeviceDetector
from device_detector.yaml_loader import regex_list

from userportrait.ingest.value_maps import ua_compact_sql
from userportrait.portrait import devices
from userportrait.synthetic import generate


@pytest.fixture(autouse=True)
def _prefilter_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the prefilter's answers: as in a process past its first new models."""
    monkeypatch.setattr(devices, "_resolved", devices.PREFILTER_AFTER)


def test_a_process_with_few_new_models_never_loads_the_prefilter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(devices, "_resolved", 0)
    lists = devices._prefiltered_lists()
    assert lists is not None and devices._prefilter_if_due(lists) is None
    monkeypatch.setattr(devices, "_resolved", devices.PREFILTER_AFTER)
    assert devices._prefilter_if_due(lists) is not None


UA_ANDROID_XIAOMI = (
    "Mozilla/5.0 (Linux; Android 13; 22081212C Build/TKQ1.220829.002; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/111.0.5563.116 Mobile Safari/537.36 XWEB/5235 "
    "MMWEBSDK/20230805 MMWEBID/6281 MicroMessenger/8.0.42.2460(0x28002A37) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64 MiniProgramEnv/android"
)
UA_ANDROID_K40 = (
    "Mozilla/5.0 (Linux; Android 12; M2012K11AC Build/SKQ1.220303.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/134.0.6998.136 Mobile Safari/537.36 XWEB/1340129 "
    "MMWEBSDK/20240301 MMWEBID/9871 MicroMessenger/8.0.48.2580(0x28003036) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64 MiniProgramEnv/android"
)
UA_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.42(0x18002a2f) NetType/WIFI Language/zh_CN"
)
UA_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/132.0.0.0 Safari/537.36 MicroMessenger/7.0.20.1781(0x6700143B) NetType/WIFI "
    "MiniProgramEnv/Windows WindowsWechat/WMPF WindowsWechat(0x63090a13) "
    "UnifiedPCWindowsWechat(0xf254173b) XWEB/19027"
)
UA_WINDOWS_OLD = (
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/53.0.2785.143 Safari/537.36 MicroMessenger/7.0.9.501 NetType/WIFI "
    "MiniProgramEnv/Windows WindowsWechat"
)
UA_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/107.0.0.0 Safari/537.36 MicroMessenger/6.8.0(0x16080000) NetType/WIFI "
    "MiniProgramEnv/Mac MacWechat/WMPF MacWechat/3.8.8(0x13080812) XWEB/1216"
)
# An iPhone UA from Mac WeChat: where WeChat says the mini program runs wins.
UA_IPHONE_ON_MAC = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 11_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E217 MicroMessenger/6.8.0(0x16080000) NetType/WIFI Language/en "
    "Branch/Br_trunk MiniProgramEnv/Mac"
)
UA_HARMONY_NEXT = (
    "Mozilla/5.0 (Phone; OpenHarmony 5.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/114.0.0.0 Safari/537.36 ArkWeb/4.1.6.1 Mobile"
)
UA_HARMONY_4 = (
    "Mozilla/5.0 (Linux; Android 12; HarmonyOS; NOH-AN00) AppleWebKit/537.36 Chrome/99.0 "
    "Mobile Safari/537.36 HuaweiBrowser/15.0"
)
UA_REDUCED = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)

MODELS = [
    ("iPhone 13<iPhone14,5>", "iPhone 13"),
    ("iPhone14,5", "iPhone 13"),
    ("iPhone X (GSM+CDMA)<iPhone10,3>", "iPhone X"),
    ("iPhone10,6", "iPhone X"),
    ("iPhone 15 Pro Max<iPhone16,2>", "iPhone 15 Pro Max"),
    ("iPhone12,8", "iPhone SE (2nd generation)"),
    ("iPhone 7 Plus (GSM)", "iPhone 7 Plus"),
    ("iPhone 19 Pro<iPhone99,1>", "iPhone 19 Pro"),  # newer than the table: WeChat's name
    ("iPad13,18", 'iPad 10 10.9" WiFi'),
    ("M2012K11AC", "Redmi K40"),
    ("22081212C", "Xiaomi 12T Pro"),
    ("2206122SC", "Xiaomi 12S Pro"),
    ("SM-G9910", "Samsung Galaxy S21 5G"),
    ("SM-S9080", "Samsung Galaxy S22 Ultra"),
    ("PCT-AL10", "Honor V20"),
    ("LGE-AN00", "Honor Magic 4"),
    ("V2049A", "iQOO 7"),
    ("V2134A", "Vivo X70 Pro"),
    ("PGKM10", "OnePlus Ace"),
    ("PDEM10", "OPPO Find X2"),
    ("ANA-AN00", "Huawei P40 5G"),
    ("NOH-AN00", "Huawei Mate 40 Pro"),
    ("ALN-AL00", "Huawei Mate 60 Pro"),
    ("RMX2202", "Realme GT 5G"),
    ("OPPO R9", "OPPO R9"),
    ("HONOR 70", "HONOR 70"),  # not in the table: kept as given
    ("microsoft", "microsoft"),  # PC WeChat
    ("MacBookPro18,1", "MacBookPro18,1"),  # Mac WeChat
    ("  ", None),
    (None, None),
]


@pytest.mark.parametrize(("model", "name"), MODELS)
def test_model_names(model: str | None, name: str | None) -> None:
    assert devices.model_name(model) == name


@pytest.mark.parametrize(
    ("name", "model"),
    [(n, m) for rows in generate._PHONES.values() for n, m, _ in rows if m is not None],
)
def test_generated_devices_are_the_names_of_their_models(name: str, model: str) -> None:
    """The generator's ``device`` is what its phone's model string normalises to, so the
    demo's devices and a real client's ``model`` give one row (issue 27)."""
    assert devices.model_name(model) == name


SYSTEMS = [
    ("iOS 17.0", 1),
    ("iOS 16.6.1", 1),
    ("iPadOS 17.1", 1),
    ("Android 13", 2),
    ("Android 9", 2),
    ("HarmonyOS 4.0.0", 3),
    ("OpenHarmony 5.0.0", 3),
    ("Windows 10 x64", 4),
    ("Windows 11 x64", 4),
    ("macOS 14.1", 5),
    ("Mac OS X 10.15.7", 5),
    ("Linux", 6),  # names a system, not one of ours: 其他
    ("", None),
]


@pytest.mark.parametrize(("system", "platform"), SYSTEMS)
def test_system_platforms(system: str, platform: int | None) -> None:
    assert devices.resolve_platform(None, system) == platform


USER_AGENTS = [
    (UA_ANDROID_XIAOMI, "Xiaomi 12T Pro", 2),
    (UA_ANDROID_K40, "Redmi K40", 2),
    (UA_IPHONE, "iPhone", 1),
    (UA_WINDOWS, None, 4),
    (UA_WINDOWS_OLD, None, 4),
    (UA_MAC, None, 5),
    (UA_IPHONE_ON_MAC, "iPhone", 5),
    (UA_HARMONY_NEXT, None, 3),
    (UA_HARMONY_4, None, 3),
    (UA_REDUCED, None, 2),  # Chrome's reduced UA names no model
    ("curl/8.7.1", None, None),  # not a client: nothing
]


@pytest.mark.parametrize(("ua", "device", "platform"), USER_AGENTS)
def test_user_agents(ua: str, device: str | None, platform: int | None) -> None:
    assert devices.resolve_device(None, None, None, ua) == device
    assert devices.resolve_platform(None, None, ua) == platform
    # The lake keeps the compact form: the rules read the same from it.
    compact = devices.compact_user_agent(ua)
    assert compact is not None and len(compact) < len(ua)
    assert devices.compact_user_agent(compact) == compact
    assert devices.resolve_device(None, None, None, compact) == device
    assert devices.resolve_platform(None, None, compact) == platform


def test_compact_user_agent_in_sql_equals_python() -> None:
    con = duckdb.connect()
    odd = ["", " ", "no comment MiniProgramEnv/android", "x (a (b) c) ArkWeb", "(" + "z" * 300]
    for ua in [u for u, _, _ in USER_AGENTS] + odd:
        sql = con.execute(f"SELECT {ua_compact_sql('u')} FROM (SELECT ? AS u)", [ua]).fetchone()
        assert sql is not None
        expected = devices.compact_user_agent(ua)
        assert sql[0] == expected or (expected is None and sql[0] in (None, "()")), ua
    assert devices.compact_user_agent(UA_ANDROID_XIAOMI) == (
        "(Linux; Android 13; 22081212C Build/TKQ1.220829.002; wv) MiniProgramEnv/android"
    )


def test_precedence() -> None:
    # device and platform given win over everything the client reports
    assert devices.resolve_device(" My Phone ", "M2012K11AC", "Xiaomi", UA_IPHONE) == "My Phone"
    assert devices.resolve_platform("android", "iOS 17.0", UA_IPHONE) == 2
    # model before UA; system before UA
    assert devices.resolve_device(None, "SM-G9910", None, UA_ANDROID_K40) == (
        "Samsung Galaxy S21 5G"
    )
    assert devices.resolve_platform(None, "HarmonyOS 4.0.0", UA_ANDROID_K40) == 3
    # an unrecognised system gives way to a UA that names one
    assert devices.resolve_platform(None, "Linux", UA_ANDROID_K40) == 2
    # the developer tools: their own device, 其他 whatever system they imitate
    assert devices.resolve_device(None, "iPhone 12/13 (Pro)", "devtools") == "devtools"
    assert devices.resolve_platform(None, "iOS 10.0.1", None, "devtools") == 6
    assert devices.resolve_platform("devtools") == 6
    # nothing reported: absent
    assert devices.resolve_device(None) is None and devices.resolve_platform(None) is None


# Matomo's detector, made fast (issue 24, hole 7; issue 28): ``devices._detector()`` finds
# each parser's first matching regex through Hyperscan's prefilter (device and OS lists,
# printable ASCII) or alternations of 64 (``devices.first_match``); the answers must be the
# library's own, one regex at a time.
_FIXTURES = Path(device_detector.__file__).parent / "tests" / "fixtures"
_MODEL_UA = "Mozilla/5.0 (Linux; Android 13; {} Build/A; wv)"


def _fast_lists() -> list[tuple[str, ...]]:
    lists = {p.fixture_files for p in devices._detector().CLIENT_PARSERS}
    lists |= {p.fixture_files for p in devices._detector().DEVICE_PARSERS}
    return [f for f in sorted(lists) if f]


def _one_by_one(fixture_files: tuple[str, ...], text: str) -> int | None:
    for i, entry in enumerate(regex_list(fixture_files)):
        if entry["regex"].search(text):
            return i
    return None


def _fixture_user_agents() -> list[str]:
    found: set[str] = set()
    for path in sorted(_FIXTURES.rglob("*.yml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.strip().partition("user_agent:")
            if not key and value.strip():
                found.add(value.strip().strip("'\""))
    return sorted(found)


def _models(n: int, seed: int) -> list[str]:
    """Real-looking models of the big Chinese makers, the generator's, and random text."""
    rnd = random.Random(seed)
    chars = string.ascii_letters + string.digits + " -_()/;.+"
    makers = [
        lambda: f"SM-G9{rnd.randint(0, 999)}{rnd.choice(['', 'U', 'B', '0'])}",
        lambda: f"Redmi Note {rnd.randint(1, 14)}{rnd.choice(['', ' Pro', ' 5G', 'T'])}",
        lambda: f"P{rnd.choice('CDEFGHJ')}{rnd.choice('ABCDEKLM')}M{rnd.randint(0, 99):02}",
        lambda: f"V{rnd.randint(1800, 2400)}{rnd.choice('AT')}",
        lambda: (
            f"{rnd.choice(['ALN', 'NOH', 'ANA', 'PCT', 'LIO', 'ELS'])}-AL{rnd.randint(0, 99):02}"
        ),
        lambda: f"{rnd.randint(20, 24)}{rnd.randint(0, 12):02}{rnd.randint(0, 9999):04}C",
        lambda: "".join(rnd.choice(chars) for _ in range(rnd.randint(1, 16))),
    ]
    generated = [m for ms in generate._MODELS.values() for m in ms]
    generated += [d for ds in generate._DEVICES.values() for d in ds]
    return generated + [rnd.choice(makers)() for _ in range(n)]


def _agree(texts: list[str], lists: list[tuple[str, ...]]) -> None:
    for fixture_files in lists:
        for text in texts:
            assert devices.first_match(fixture_files, text) == _one_by_one(fixture_files, text), (
                fixture_files,
                text,
            )


def _details(detector: Any, ua: str) -> Any:
    return detector(ua, skip_bot_detection=True, check_cache=False).parse().all_details


def test_first_match_is_the_first_regex_one_by_one() -> None:
    """The device parser's ~2,000 brand regexes on 2,000 models (and every other list the
    fast detector groups on 300 models and fixture UAs): the same first regex."""
    models = _models(2000, seed=24)
    _agree([_MODEL_UA.format(m) for m in models], [("upstream/device/mobiles.yml",)])
    uas = _fixture_user_agents()[::400] + [_MODEL_UA.format(m) for m in models[::7]]
    _agree(uas, [f for f in _fast_lists() if f != ("upstream/device/mobiles.yml",)])


def test_fast_detector_gives_the_librarys_answer() -> None:
    detector = devices._detector()
    assert detector.__name__ == DeviceDetector.__name__
    uas = [_MODEL_UA.format(m) for m in _models(200, seed=7)] + _fixture_user_agents()[::300]
    for ua in uas:
        assert _details(detector, ua) == _details(DeviceDetector, ua), ua


@pytest.mark.slow
def test_fast_detector_gives_the_librarys_answer_on_many() -> None:
    """Every UA of the library's own fixtures (~38,000) and 20,000 models, whole answers."""
    detector = devices._detector()
    models = _models(20000, seed=2024)
    for ua in _fixture_user_agents() + [_MODEL_UA.format(m) for m in models]:
        assert _details(detector, ua) == _details(DeviceDetector, ua), ua


# Issue 28, target 4: a model name reads only the device parsers (``_model_detector``: no
# client parsers), no detector runs when no device regex matches (``_finds_no_model``),
# and the device and OS lists go through Hyperscan's prefilter (``_prefilter``); each must
# give the library's own answer.
def _library_name(model: str) -> str | None:
    found = DeviceDetector(_MODEL_UA.format(model), skip_bot_detection=True, check_cache=False)
    return devices._name_of(found.parse())


def _no_model_agrees(uas: list[str]) -> None:
    for ua in uas:
        if devices._finds_no_model(ua):
            found = DeviceDetector(ua, skip_bot_detection=True, check_cache=False).parse()
            assert found.device_model() == "", ua


def test_model_names_are_the_librarys() -> None:
    models = _models(300, seed=28)
    models += ["".join(random.Random(i).choices(string.ascii_uppercase, k=8)) for i in range(50)]
    for model in models:
        assert devices._matomo_name.__wrapped__(model) == _library_name(model), model


def test_no_model_found_only_where_the_library_finds_none() -> None:
    """Over the library's fixture UAs too (TVs, consoles, notebooks, cameras, cars)."""
    assert devices._finds_no_model(_MODEL_UA.format("QWERTYUI"))
    assert not devices._finds_no_model(_MODEL_UA.format("M2012K11AC"))
    assert not devices._finds_no_model(_MODEL_UA.format("SM-G9910"))
    uas = _fixture_user_agents()
    _no_model_agrees(uas[::60] + [ua for ua in uas if "HbbTV" in ua or "Shell" in ua][::10])


def test_prefilter_outside_printable_ascii_takes_the_groups() -> None:
    """Non-ASCII and control characters (where the engines' ``\\s`` and case differ) agree
    with the one-by-one answer through the groups."""
    texts = [
        _MODEL_UA.format(m)
        for m in ("SM-G991\x1cB", "\u212aB-100", "Redmi\u00a0Note 9", "Mi 9\u0130", "ONE A2003\n")
    ]
    _agree(texts, _fast_lists())
    _no_model_agrees(texts)


def test_prefilter_kept_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled once, then loaded from the cache directory; a damaged file is compiled again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    lists = (("upstream/device/consoles.yml",), ("upstream/device/cameras.yml",))
    uas = _fixture_user_agents()[::50] + ["Nintendo Switch", "PlayStation 4 Pro", "iOS; EK-GC100"]
    expected = [[_one_by_one(files, ua) for files in lists] for ua in uas]

    def answers() -> list[list[int | None]]:
        prefilter = devices._prefilter.__wrapped__(lists)
        assert prefilter is not None
        return [
            [
                prefilter.first(ua, span) if devices._printable_ascii(ua) else None
                for span in prefilter.spans
            ]
            for ua in uas
        ]

    printable = [devices._printable_ascii(ua) for ua in uas]
    want = [e if ok else [None, None] for e, ok in zip(expected, printable, strict=True)]
    assert answers() == want
    (cached,) = (tmp_path / "userportrait").iterdir()
    assert answers() == want
    cached.write_bytes(b"\n" + b"x" * 100)
    assert answers() == want
    assert cached.read_bytes() != b"\n" + b"x" * 100


@pytest.mark.slow
def test_model_names_are_the_librarys_on_many() -> None:
    """No model found only where the library finds none, on every fixture UA; the names of
    20,000 models."""
    _no_model_agrees(_fixture_user_agents())
    for model in _models(20000, seed=2028):
        assert devices._matomo_name.__wrapped__(model) == _library_name(model), model
