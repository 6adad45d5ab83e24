"""``state/manifest.json``: which files make up the state, and which app updates failed.

Files are written first and the manifest last (atomic rename), so a reader always sees
one consistent version; every file name carries the catalog version that wrote it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.durable import atomic_write_bytes
from userportrait.store.lake import Lake

#: 3: one head, uint8 ages, a window table; 4: span histograms per end day; 5: ``.npys``
#: day partitions and heads, the newest day's overlay.
FORMAT = 5
#: Seconds before the first retry of a failed app update; doubled per attempt up to the max.
RETRY_BACKOFF_S = 5.0
RETRY_BACKOFF_MAX_S = 900.0


@dataclass(slots=True)
class AppState:
    """The manifest entry of one appid (file names relative to the app's directory)."""

    users: list[str] = field(default_factory=list)
    n_users: int = 0
    first_day: str | None = None
    devices: str | None = None
    days: dict[str, str] = field(default_factory=dict)  # yyyy-mm-dd -> file
    spans: dict[str, str] = field(default_factory=dict)  # end day -> span histograms
    heads: dict[str, str] = field(default_factory=dict)  # the last few days -> head
    keys: dict[str, str] = field(default_factory=dict)  # the newest day -> winners' times
    overlay: dict[str, str] = field(default_factory=dict)  # the newest day -> its overlay
    version: int = 0  # the catalog version this app's state reflects
    sizes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIMS, 1))

    def files(self) -> set[str]:
        named = [self.first_day, self.devices]
        named += [*self.days.values(), *self.spans.values(), *self.heads.values(), *self.users]
        named += [*self.keys.values(), *self.overlay.values()]
        return {f for f in named if f}

    def copy(self) -> AppState:
        return AppState(
            users=list(self.users),
            n_users=self.n_users,
            first_day=self.first_day,
            devices=self.devices,
            days=dict(self.days),
            spans=dict(self.spans),
            heads=dict(self.heads),
            keys=dict(self.keys),
            overlay=dict(self.overlay),
            version=self.version,
            sizes=dict(self.sizes),
        )

    def value_sizes(self) -> dict[Dim, int]:
        """One more than the largest value id seen, per dim (the counting arrays' sizes)."""
        return {d: int(self.sizes[d]) for d in DIMS}


@dataclass(slots=True)
class Failure:
    """A failed state update of one appid: what is still to apply, and when to retry."""

    days: list[str]
    error: str
    attempts: int
    last_try: float  # epoch seconds

    def next_try(self) -> float:
        wait = RETRY_BACKOFF_S * 2.0 ** (self.attempts - 1)
        return self.last_try + min(wait, RETRY_BACKOFF_MAX_S)

    def public(self) -> dict[str, Any]:
        """What /healthz shows (no paths or data: the error's type and first line)."""
        return {
            "error": self.error,
            "attempts": self.attempts,
            "last_try": dt.datetime.fromtimestamp(self.last_try, dt.UTC).isoformat(),
            "next_try": dt.datetime.fromtimestamp(self.next_try(), dt.UTC).isoformat(),
            "days_pending": len(self.days),
        }


@dataclass(slots=True)
class Manifest:
    version: int = 0
    apps: dict[str, AppState] = field(default_factory=dict)
    failed: dict[str, Failure] = field(default_factory=dict)

    def to_json(self) -> str:
        apps = {
            a: {
                "users": s.users,
                "n_users": s.n_users,
                "first_day": s.first_day,
                "devices": s.devices,
                "days": s.days,
                "spans": s.spans,
                "heads": s.heads,
                "keys": s.keys,
                "overlay": s.overlay,
                "version": s.version,
                "sizes": s.sizes,
            }
            for a, s in sorted(self.apps.items())
        }
        failed = {
            a: {"days": f.days, "error": f.error, "attempts": f.attempts, "last_try": f.last_try}
            for a, f in sorted(self.failed.items())
        }
        body = {"format": FORMAT, "version": self.version, "apps": apps, "failed": failed}
        # Compact: ``indent`` takes json's pure-Python encoder, 5x slower, and every writer
        # writes the whole manifest (35-60 ms at 1,000 apps; ``python -m json.tool`` reads it).
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            return cls()  # an unknown layout: rebuild
        apps = {a: AppState(**s) for a, s in raw["apps"].items()}
        failed = {a: Failure(**f) for a, f in raw.get("failed", {}).items()}
        return cls(raw["version"], apps, failed)

    @classmethod
    def read(cls, root: Path) -> Manifest:
        try:
            return cls.from_json((root / "manifest.json").read_text("utf-8"))
        except FileNotFoundError:
            return cls()

    def write(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(root / "manifest.json", self.to_json().encode())

    def due(self, now: float) -> set[str]:
        """Failed apps whose back-off has passed."""
        return {a for a, f in self.failed.items() if now >= f.next_try()}


def app_dir(root: Path, appid: str) -> Path:
    return root / f"appid={appid}"


def publish(root: Path, old: Manifest, new: Manifest) -> None:
    """Write the manifest last; keep the previous version's files for readers still using
    it and drop every other file."""
    new.write(root)
    keep = {app_dir(root, a) / f for m in (old, new) for a, s in m.apps.items() for f in s.files()}
    for path in root.glob("appid=*/**/*"):
        if path.is_file() and path not in keep:
            path.unlink(missing_ok=True)


#: Each data directory's manifest as last parsed for the probes (its version and failures),
#: by its (inode, mtime, size): /healthz and /metrics ask every few seconds, and the manifest
#: grows with apps x days (1.5 MB at 1,000 apps of 10 days, 15 MB at 10,000). A writer
#: replaces it by a rename (a new inode), so an unchanged stat means an unchanged manifest.
_probed: dict[Path, tuple[tuple[int, int, int], int, dict[str, Failure]]] = {}


def _probe(lake: Lake) -> tuple[int, dict[str, Failure]]:
    path = lake.state_dir / "manifest.json"
    try:
        st = path.stat()
    except FileNotFoundError:
        return 0, {}
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    seen = _probed.get(path)
    if seen is None or seen[0] != stamp:
        # Replaced after the stat: cached under the older stamp, read again next time.
        manifest = Manifest.read(lake.state_dir)
        seen = _probed[path] = (stamp, manifest.version, manifest.failed)
    return seen[1], seen[2]


def state_version(lake: Lake) -> int:
    """The catalog version the published state reflects (for /metrics' lag)."""
    return _probe(lake)[0]


def state_failures(lake: Lake) -> dict[str, dict[str, Any]]:
    """The apps whose state update failed and is waiting for a retry (for /healthz)."""
    return {a: f.public() for a, f in sorted(_probe(lake)[1].items())}
