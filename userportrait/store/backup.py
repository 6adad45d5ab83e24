"""Backups of a data directory taken while it serves, and restoring them (issue 26).

A backup is a directory::

    BACKUP/
      FORMAT           "userportrait-backup 1", written last: a backup without it is unfinished
      manifest.json    every file under data/: size, and sha256 where the backup read its bytes
      data/            the data directory's files, at their relative paths

What is consistent, and why:

* ``catalog.sqlite`` is copied with SQLite's online backup API (a file copy of a live WAL
  database may be torn), under the writer lock (``write.lock``): every batch commits under
  it, so the snapshot holds a batch wholly or not at all.
* Under the same lock the backup takes the state manifest and the files it names, then the
  lake and profile files the catalog snapshot lists: the state is at most as new as the
  catalog (it is never newer; an older one catches up when the restored store is read).
* Those files are immutable once committed: every one is written under a new name
  (staging + rename, ``durable.atomic_write``, or a DuckDB ``COPY`` to a name carrying the
  new version) and never opened for writing again. So they are hard-linked, which costs
  microseconds a file; the lock is held only for the links and the SQLite snapshots. When
  the backup is on another file system, the links go to a pin under ``DATA_DIR/_tmp/``
  (compaction, ``forget`` and ``expire`` may delete a listed file at any time after the
  lock is released; a link keeps it) and are copied from there without the lock.
* The other SQLite files (``meta``, ``access``, ``component``, ``dashboard``) are snapshot
  with the backup API; small files (``server.key``, key files, the ip database override),
  ``rejects/`` and any other file found are copied, with their sha256.
* Not copied: ``wal/`` (live events acknowledged but not yet in a batch: the catalog
  snapshot defines what the backup holds), locks, ``_staging/``, ``_tmp/``,
  ``state/_fold/``, SQLite ``-wal``/``-shm`` files, ``*.tmp``.

Checksums: sha256 for every file the backup wrote by reading bytes; hard-linked lake and
state files get their size only (hashing them would read the whole lake, which the links
avoid), and restore also checks a Parquet file's ``PAR1`` marks at both ends.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from userportrait.errors import InputError
from userportrait.settings import Settings
from userportrait.store.durable import fsync_path, fsync_tree
from userportrait.store.lake import Lake
from userportrait.store.state.manifest import Manifest, app_dir

FORMAT_FILE = "FORMAT"
FORMAT = "userportrait-backup 1"
MANIFEST = "manifest.json"
DATA = "data"
#: Entries of the data directory that are work in progress, locks or live-only.
SKIPPED = frozenset({"write.lock", "wal", "_staging", "_tmp"})
#: Directories whose files the catalog or the state manifest lists (taken from those).
LISTED = frozenset({"events", "profiles", "state"})
SQLITE_SIDE = ("-wal", "-shm", "-journal")

#: (what, done, total): progress of the phase ``what``.
Progress = Callable[[str, int, int], None]


def no_progress(_what: str, _done: int, _total: int) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    size: int
    sha256: str | None  # None: hard-linked, checked by size (and Parquet marks)


@dataclass(slots=True)
class BackupReport:
    path: Path
    catalog_version: int = 0
    state_version: int = 0
    files: dict[str, Entry] = field(default_factory=dict)
    linked: int = 0  # files hard-linked (no bytes copied)
    bytes: int = 0
    seconds_locked: float = 0.0

    def manifest(self) -> str:
        files = {p: {"size": e.size, "sha256": e.sha256} for p, e in sorted(self.files.items())}
        body = {
            "format": FORMAT,
            "created_at": time.time(),
            "catalog_version": self.catalog_version,
            "state_version": self.state_version,
            "files": files,
        }
        return json.dumps(body, indent=1)


# -- backup ---------------------------------------------------------------------------------


def backup(settings: Settings, dest: Path, progress: Progress = no_progress) -> BackupReport:
    """Copy the data directory of ``settings`` into the new directory ``dest``."""
    root = settings.data_dir
    if not (root / "catalog.sqlite").is_file():
        raise InputError(f"{root}: not a userportrait data directory (no catalog.sqlite)")
    _empty_target(dest)
    data = dest / DATA
    data.mkdir(mode=0o700, parents=True)
    dest.chmod(0o700)  # it holds the keys
    lake = Lake(settings)
    report = BackupReport(dest)
    same_fs = os.stat(data).st_dev == os.stat(root).st_dev
    pin = data if same_fs else root / "_tmp" / f"backup-{uuid.uuid4().hex[:12]}"
    try:
        started = time.monotonic()
        with lake.write_lock():
            linked = _snapshot(root, data, pin, report, progress)
        report.seconds_locked = time.monotonic() - started
        if pin != data:
            _copy_pinned(pin, data, linked, report, progress)
        if report.state_version > report.catalog_version:  # the snapshot's order rules it out
            raise InputError(f"state version {report.state_version} above the catalog's")
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)  # no FORMAT file either: nothing to mistake
        raise
    finally:
        if pin != data:
            shutil.rmtree(pin, ignore_errors=True)
    # Linked files are on disk already: only their directory entries need flushing.
    copied = [data / p for p, e in report.files.items() if e.sha256 is not None]
    linked_dirs = {(data / p).parent for p, e in report.files.items() if e.sha256 is None}
    fsync_tree([*copied, *sorted(linked_dirs)], dest)
    (dest / MANIFEST).write_text(report.manifest(), "utf-8")
    fsync_path(dest / MANIFEST)
    (dest / FORMAT_FILE).write_text(FORMAT + "\n", "utf-8")
    fsync_path(dest / FORMAT_FILE)
    fsync_path(dest)
    return report


def _snapshot(
    root: Path, data: Path, pin: Path, report: BackupReport, progress: Progress
) -> list[str]:
    """What the writer lock must cover: SQLite snapshots, then the state manifest and its
    files, then the lake files the catalog snapshot lists. Returns the linked paths."""
    linked: list[str] = []
    # The state first and the catalog after it: the state is never newer than the catalog.
    state = root / "state"
    raw = _read_or_none(state / "manifest.json")
    manifest = Manifest.from_json(raw.decode()) if raw is not None else Manifest()
    if manifest.version:  # a state of another format is rebuilt: nothing to take
        report.state_version = manifest.version
        _write_copy(raw or b"", data / "state" / "manifest.json", "state/manifest.json", report)
        for appid, app in manifest.apps.items():
            linked += [str((app_dir(state, appid) / f).relative_to(root)) for f in app.files()]
    for db in sorted(root.glob("*.sqlite")):
        progress("snapshotting " + db.name, 0, 1)
        _sqlite_snapshot(db, data / db.name, db.name, report)
    with contextlib.closing(sqlite3.connect(data / "catalog.sqlite")) as con:
        report.catalog_version = con.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[
            0
        ]
        linked += [r[0] for r in con.execute("SELECT path FROM files ORDER BY path")]
        linked += [r[0] for r in con.execute("SELECT path FROM profile_files ORDER BY path")]
    for parent in sorted({(pin / rel).parent for rel in linked}):
        parent.mkdir(parents=True, exist_ok=True)  # once a directory, not once a file
    for i, rel in enumerate(linked):
        if i % 256 == 0:
            progress("linking", i, len(linked))
        _link_or_copy(root / rel, pin / rel, rel)
        if pin == data:
            _note_link(data, rel, report)
    progress("linking", len(linked), len(linked))
    _copy_rest(root, data, report)
    return linked


def _copy_rest(root: Path, data: Path, report: BackupReport) -> None:
    """Every other file of the data directory: top-level files, ``rejects/``, ``regions/``
    and whatever a newer version keeps there (SQLite files were snapshot already)."""
    for top in sorted(root.iterdir()):
        if top.name in SKIPPED or top.name in LISTED:
            continue  # never walked: events/ and state/ may hold 100,000s of files
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            name = path.name
            if not path.is_file() or name.endswith(SQLITE_SIDE) or name.endswith(".tmp"):
                continue
            if path.parent == root and name.endswith((".sqlite", ".lock")):
                continue
            raw = _read_or_none(path)
            if raw is not None:  # else removed meanwhile (a rejects file of a forget)
                rel = path.relative_to(root)
                _write_copy(raw, data / rel, str(rel), report)


def _copy_pinned(
    pin: Path, data: Path, linked: list[str], report: BackupReport, progress: Progress
) -> None:
    """The pinned files copied to a backup on another file system (no lock held)."""
    total = sum((pin / rel).stat().st_size for rel in linked)
    done = 0
    for rel in linked:
        target = data / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with (pin / rel).open("rb") as src, target.open("wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                progress("copying", done, total)
        size = target.stat().st_size
        report.files[rel] = Entry(size, digest.hexdigest())
        report.bytes += size


def _sqlite_snapshot(src: Path, dst: Path, rel: str, report: BackupReport) -> None:
    """A consistent copy of a live SQLite database, as one self-contained file."""
    with (
        contextlib.closing(sqlite3.connect(src, timeout=30)) as live,
        contextlib.closing(sqlite3.connect(dst)) as copy,
    ):
        live.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # no -wal beside the copy
    dst.chmod(0o600)
    raw = dst.read_bytes()
    report.files[rel] = Entry(len(raw), hashlib.sha256(raw).hexdigest())
    report.bytes += len(raw)


def _write_copy(raw: bytes, dst: Path, rel: str, report: BackupReport) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    report.files[rel] = Entry(len(raw), hashlib.sha256(raw).hexdigest())
    report.bytes += len(raw)


def _note_link(data: Path, rel: str, report: BackupReport) -> None:
    report.files[rel] = Entry((data / rel).stat().st_size, None)
    report.linked += 1


def _link_or_copy(src: Path, dst: Path, rel: str) -> None:
    """A hard link of ``src`` (immutable), or a copy where links are impossible (the
    directory of ``dst`` exists)."""
    try:
        os.link(src, dst)
    except FileNotFoundError:
        # Listed under the writer lock, so only a bug (or a hand) removed it.
        raise InputError(f"{rel}: listed but missing from the data directory") from None
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        shutil.copyfile(src, dst)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _empty_target(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path}: exists and is not empty; refusing to write there")


# -- restore --------------------------------------------------------------------------------


def check_backup(src: Path, progress: Progress = no_progress) -> dict[str, Entry]:
    """The backup's files after checking them: every listed file present with its size,
    its sha256 where the manifest has one, Parquet files whole, SQLite files intact, and
    every lake file the catalog lists in the backup. Raises ``InputError`` naming a file."""
    if _read_or_none(src / FORMAT_FILE) is None:
        raise InputError(f"{src}: not a finished userportrait backup (no {FORMAT_FILE} file)")
    found = (src / FORMAT_FILE).read_text("utf-8").strip()
    if found != FORMAT:
        raise InputError(f"{src}: backup format {found!r}, this version reads {FORMAT!r}")
    raw = json.loads((src / MANIFEST).read_text("utf-8"))
    files = {p: Entry(e["size"], e["sha256"]) for p, e in raw["files"].items()}
    data = src / DATA
    for i, (rel, entry) in enumerate(sorted(files.items())):
        if i % 256 == 0:
            progress("checking", i, len(files))
        _check_file(data / rel, rel, entry)
    progress("checking", len(files), len(files))
    for db in sorted(p for p in files if "/" not in p and p.endswith(".sqlite")):
        uri = f"file:{data / db}?immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
            result = [r[0] for r in con.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            raise InputError(f"backup damaged: {DATA}/{db}: integrity_check: {result[0]}")
    if "catalog.sqlite" not in files:
        raise InputError(f"backup damaged: {DATA}/catalog.sqlite: not in the manifest")
    with contextlib.closing(
        sqlite3.connect(f"file:{data / 'catalog.sqlite'}?immutable=1", uri=True)
    ) as con:
        listed = [
            r[0] for r in con.execute("SELECT path FROM files UNION SELECT path FROM profile_files")
        ]
    for rel in listed:
        if rel not in files:
            raise InputError(f"backup damaged: {DATA}/{rel}: listed by the catalog, not backed up")
    return files


def _check_file(path: Path, rel: str, entry: Entry) -> None:
    name = f"{DATA}/{rel}"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"backup damaged: {name}: missing") from None
    if size != entry.size:
        raise InputError(f"backup damaged: {name}: {size} bytes, the manifest says {entry.size}")
    if entry.sha256 is not None:
        if _sha256(path) != entry.sha256:
            raise InputError(f"backup damaged: {name}: sha256 differs from the manifest")
    elif path.suffix == ".parquet":
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(max(0, size - 4))
            if head != b"PAR1" or fh.read(4) != b"PAR1":
                raise InputError(f"backup damaged: {name}: not a whole Parquet file")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def restore(src: Path, target: Path, progress: Progress = no_progress) -> int:
    """Check the backup ``src`` and make it the data directory ``target`` (which must be
    new or empty); returns the number of files. Built beside the target and renamed into
    place, so a killed restore leaves no half data directory."""
    _empty_target(target)
    files = check_backup(src, progress)
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.restore-{uuid.uuid4().hex[:8]}"
    work.mkdir(mode=0o700)
    made = {work}
    try:
        for i, (rel, entry) in enumerate(sorted(files.items())):
            if i % 256 == 0:
                progress("restoring", i, len(files))
            dst = work / rel
            if dst.parent not in made:
                dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                made.add(dst.parent)
            if entry.sha256 is None:  # immutable: a link to the backup's file
                _link_or_copy(src / DATA / rel, dst, rel)
            else:  # written to by the store (SQLite) or private (keys): a copy of its own
                shutil.copyfile(src / DATA / rel, dst)
                dst.chmod(0o600)
        progress("restoring", len(files), len(files))
        fsync_tree([work / p for p in files], work)
        if target.exists():
            target.rmdir()  # empty, checked above
        work.rename(target)
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return len(files)
