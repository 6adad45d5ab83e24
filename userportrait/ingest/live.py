"""Live ingestion: a write-ahead log that acknowledges events only once they are on disk.

Requests append canonical NDJSON lines to the current WAL segment; one writer thread
batches the appends of concurrent requests into a single ``write`` + ``fsync`` (group
commit), and only then are the requests answered. A flusher thread closes the segment
every ``live_flush_interval_ms`` and loads it into the lake with the bulk pipeline, so live
and bulk events share one path (and its ``event_id`` de-duplication). A segment is deleted
only after its batch is committed; on start every segment left over is replayed, and one
that was committed already is recognised by its SHA-256 and skipped. After ``kill -9`` at
any moment, every acknowledged event is therefore counted exactly once. Beside the
flusher, a folder thread folds the newest day's overlay into its files once flushes have
grown it (``store/state/folding.py``), so no flush pays for that.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from userportrait.errors import Busy, InputError
from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.records import check_record, dump_record
from userportrait.metrics import FLUSH_SECONDS
from userportrait.portrait.rules import RecordError
from userportrait.store.compact import compact
from userportrait.store.durable import fsync_path
from userportrait.store.forget import ForgetReport, forget
from userportrait.store.lake import Lake, try_lock
from userportrait.store.state.folding import OverlayFolder

log = logging.getLogger("userportrait.live")


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    index: int
    reason: str


@dataclass(slots=True)
class LiveReport:
    accepted: int = 0
    rejected: list[RejectedRecord] = field(default_factory=list)


#: Seconds the live path trusts the retention cuts it read (``_retention_cuts``).
CUTS_TTL_S = 5.0


class LiveIngest:
    """The WAL writer and the flusher that turns closed segments into lake batches."""

    def __init__(
        self,
        lake: Lake,
        *,
        flush_interval_ms: int = 2000,
        max_pending_events: int = 2_000_000,
        compact_files: int = 16,
    ) -> None:
        self.lake = lake
        self.dir = lake.root / "wal"
        self.flush_interval = flush_interval_ms / 1000
        self.max_pending = max_pending_events
        self.compact_files = compact_files
        self._appends: queue.Queue[tuple[bytes, int, Future[None]] | None] = queue.Queue()
        self._segment_lock = threading.Lock()
        self._flush_lock = threading.RLock()  # one flush at a time (the flusher, a forget)
        self._pending = 0  # acknowledged or queued events not yet in a committed batch
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seq = 0
        self._file: Any = None
        self._file_events = 0
        self._owner: Any = None
        self._folder = OverlayFolder(lake)
        self._cuts: tuple[float, dict[str, str]] = (float("-inf"), {})

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # One server per data directory owns the WAL: a second one would replay and delete
        # segments under the first one's feet.
        self._owner = (self.dir / "owner.lock").open("a+b")
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._owner.close()
            raise InputError(
                f"{self.lake.root}: another server is using this data directory"
            ) from None
        self._recover()
        self._open_segment()
        self._folder.start()
        for target, name in ((self._write_loop, "wal-writer"), (self._flush_loop, "wal-flusher")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Write what was queued, load every segment into the lake, stop the threads."""
        self._appends.put(None)
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._folder.stop()  # first: the last flush starts no fold (the next start does)
        self.flush()
        with self._segment_lock:
            if self._file is not None:
                path = Path(self._file.name)
                self._file.close()
                self._file = None
                if path.stat().st_size == 0:
                    path.unlink()
        self._owner.close()  # releases the flock

    # -- requests --------------------------------------------------------------------------
    def pending(self) -> int:
        """Events acknowledged or queued and not yet in a committed batch."""
        with self._pending_lock:
            return self._pending

    def submit(self, records: list[Any], appid: str | None) -> tuple[LiveReport, Future[None]]:
        """Check records; queue the valid ones. Await the future before acknowledging."""
        report = LiveReport()
        lines: list[bytes] = []
        cuts = self._retention_cuts()
        for i, record in enumerate(records):
            try:
                lines.append(dump_record(check_record(record, appid, cuts)))
            except RecordError as exc:
                report.rejected.append(RejectedRecord(i, str(exc)))
        report.accepted = len(lines)
        done: Future[None] = Future()
        if not lines:
            done.set_result(None)
            return report, done
        with self._pending_lock:
            if self._pending + len(lines) > self.max_pending:
                raise Busy("ingest queue is full, retry later")
            self._pending += len(lines)
        self._appends.put((b"".join(lines), len(lines), done))
        return report, done

    def _retention_cuts(self) -> dict[str, str]:
        """The apps' retention cuts, read at most every ``CUTS_TTL_S`` (an expiry by
        another process is seen that late here; the flush's check, under the writer
        lock, rejects what slipped through, into ``rejects/``)."""
        read_at, cuts = self._cuts
        now = time.monotonic()
        if now - read_at >= CUTS_TTL_S:
            cuts = {a: r.first_kept for a, r in self.lake.catalog.retention().items()}
            self._cuts = (now, cuts)
        return cuts

    # -- WAL writer (group commit) ---------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._appends.get()
            batch = [item]
            while len(batch) < 512:
                try:
                    batch.append(self._appends.get_nowait())
                except queue.Empty:
                    break
            work = [b for b in batch if b is not None]
            if work:
                self._write(work)
            if any(b is None for b in batch):
                return

    def _write(self, work: list[tuple[bytes, int, Future[None]]]) -> None:
        try:
            with self._segment_lock:
                self._file.write(b"".join(data for data, _, _ in work))
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file_events += sum(n for _, n, _ in work)
        except Exception as exc:  # the disk failed: nothing in this group is acknowledged
            log.exception("WAL write failed")
            with self._pending_lock:
                self._pending -= sum(n for _, n, _ in work)
            for _, _, fut in work:
                fut.set_exception(exc)
            return
        for _, _, fut in work:
            fut.set_result(None)

    # -- segments --------------------------------------------------------------------------
    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("segment-*.ndjson"))

    def _open_segment(self) -> None:
        existing = self._segments()
        if existing:
            self._seq = max(self._seq, int(existing[-1].stem.split("-")[1]))
        self._seq += 1
        path = self.dir / f"segment-{self._seq:012d}.ndjson"
        self._file = path.open("ab")
        self._file_events = 0
        fsync_path(self.dir)

    def _rotate(self) -> None:
        """Close the current segment if it holds events, and start a new one."""
        with self._segment_lock:
            if self._file_events == 0:
                return
            self._file.close()
            self._open_segment()

    def _recover(self) -> None:
        """Cut a torn last line (never acknowledged) off every segment left by a crash."""
        for path in self._segments():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                with path.open("r+b") as fh:
                    fh.truncate(end)
                    fh.flush()
                    os.fsync(fh.fileno())
            with self._pending_lock:
                self._pending += data[:end].count(b"\n")
        self.flush()

    # -- flusher ---------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self._rotate()
            try:
                self.flush(closed_only=True)
            except Exception:
                log.exception("flushing the WAL into the lake failed; will retry")

    def flush(self, closed_only: bool = False) -> int:
        """Load segments into the lake (all of them, or all but the open one)."""
        with self._flush_lock:
            return self._flush(closed_only)

    def forget(self, appid: str, openids: list[str]) -> ForgetReport:
        """``store.forget.forget`` after every acknowledged event is in the lake (the WAL
        keeps none of theirs; events sent after this are new data)."""
        with self._flush_lock:
            self._flush(closed_only=False)
            return forget(self.lake, appid, openids)

    def _flush(self, closed_only: bool) -> int:
        if not closed_only:
            self._rotate()
        current = Path(self._file.name) if self._file is not None else None
        loaded = 0
        for path in self._segments():
            if path == current:
                continue
            events = path.read_bytes().count(b"\n")
            if events:
                with FLUSH_SECONDS.time():
                    ingest_file(self.lake, path)
            path.unlink()
            fsync_path(self.dir)
            with self._pending_lock:
                self._pending = max(0, self._pending - events)
            loaded += events
        if loaded:
            self._folder.poke()
        if loaded and self.compact_files:
            # Each flush adds a file to today's partition; merge them before they pile up.
            # The events are committed already, so a failure here only postpones it.
            try:
                compact(self.lake, min_files=self.compact_files)
            except Exception:
                log.exception("compacting the lake failed; the next flush retries")
        return loaded


def forget_offline(lake: Lake, appid: str, openids: list[str]) -> ForgetReport:
    """A forget from the command line: refused while a server owns the data directory
    (its write-ahead log may hold the users' events: send it ``POST /v1/forget``); the
    segments a stopped server left are loaded into the lake first, as its start would."""
    wal = lake.root / "wal"
    wal.mkdir(parents=True, exist_ok=True)
    with try_lock(wal / "owner.lock") as mine:
        if not mine:
            raise InputError(
                f"{lake.root}: a server is using this data directory; "
                "send it the forget (POST /v1/forget)"
            )
        for path in sorted(wal.glob("segment-*.ndjson")):
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1  # a torn last line was never acknowledged
            if end:
                if end != len(data):
                    with path.open("r+b") as fh:
                        fh.truncate(end)
                        fh.flush()
                        os.fsync(fh.fileno())
                ingest_file(lake, path)
            path.unlink()
            fsync_path(wal)
        return forget(lake, appid, openids)
