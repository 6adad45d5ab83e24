"""Loading profile records (docs/ingest.md): from files (``ingest --profiles``) and over HTTP.

Both ways check every record with ``portrait.profiles.check_profile`` (Python: profiles
are one record per user, small beside events), so a record gets the same verdict however
it comes. Files are opened by ``sources.open_source`` with the profile columns (Parquet,
CSV, NDJSON, gzip; structurally broken rows are rejected as for events). An accepted batch
is written and committed at once (``store.profiles.write_profiles``, durable when it
returns): there is no write-ahead log for profiles.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import duckdb

from userportrait.errors import InputError
from userportrait.ingest.live import LiveReport, RejectedRecord
from userportrait.ingest.pipeline import IngestReport, read_rejects, sha256_of
from userportrait.ingest.records import Unreadable, parse_ts_us
from userportrait.ingest.sources import Fields, open_source
from userportrait.portrait.profiles import Profile, check_profile, now_us
from userportrait.portrait.rules import (
    PROFILE_FIELDS,
    PROFILE_REQUIRED,
    RecordError,
    Reject,
)
from userportrait.store.lake import Lake
from userportrait.store.profiles import write_profiles
from userportrait.store.state import update_state

#: The columns of a profile file (``updated_at`` is optional: missing, the time of ingest).
PROFILE_INPUT: Final = Fields(PROFILE_REQUIRED, PROFILE_FIELDS, "updated_at")


def check_profile_files(lake: Lake, paths: Sequence[Path]) -> None:
    """Open every file and check its columns before anything is written."""
    con = lake.connect()
    try:
        for path in paths:
            open_source(con, path, PROFILE_INPUT)
    finally:
        con.close()


def ingest_profiles_file(lake: Lake, path: Path, now: int | None = None) -> IngestReport:
    """Load one profile file; ``now``: the time of ingest in epoch microseconds."""
    report = IngestReport(file=str(path))
    text_cols = PROFILE_INPUT.text
    con = lake.connect()
    try:
        source, select = open_source(con, path, PROFILE_INPUT)
        # Kept apart from event files' digests: the same file loaded as events is another batch.
        sha = "profiles:" + sha256_of(path)
        if lake.catalog.find_batch_by_sha(sha) is not None:
            report.skipped = True
            return report
        rows = con.execute(f"SELECT _err, ts_text, {', '.join(text_cols)} FROM ({select})")
        fetched = rows.fetchall()
    except duckdb.Error as exc:
        raise InputError(f"{path}: {str(exc).strip().splitlines()[0]}") from None
    finally:
        con.close()
    at = now_us() if now is None else now
    numbered = ((n + source.line_offset, *row) for n, row in enumerate(fetched, start=1))
    accepted, rejects = check_profile_rows(numbered, str(path), at)
    commit_profiles(lake, str(path), sha, accepted, rejects, report)
    return report


def check_profile_rows(
    rows: Iterable[Sequence[Any]], file: str, at: int
) -> tuple[list[Profile], list[dict[str, Any]]]:
    """The accepted profiles and the rejects of ``rows`` of (line, ``_err``, ``ts_text``,
    the ``PROFILE_INPUT.text`` columns), in file order: ``ingest --profiles`` and ``spark
    ingest --profiles`` both pass their rows through here."""
    text_cols = PROFILE_INPUT.text
    accepted: list[Profile] = []
    rejects: list[dict[str, Any]] = []
    for line, err, ts_text, *values in rows:
        record = dict(zip(text_cols, values, strict=True))
        record["updated_at"] = ts_text
        if err == Reject.BLANK_LINE:
            continue
        try:
            if err is not None:
                raise RecordError(err)
            accepted.append(check_profile(record, at, parse_ts_us))
        except RecordError as exc:
            kept = {k: record[k] for k in PROFILE_FIELDS if record.get(k) is not None}
            rejects.append({"file": file, "line": line, "reason": str(exc), "record": kept})
    return accepted, rejects


def commit_profiles(
    lake: Lake,
    file: str,
    sha: str,
    accepted: list[Profile],
    rejects: list[dict[str, Any]],
    report: IngestReport,
) -> None:
    """Write and commit one file's profiles as a batch, and its rejects."""
    with lake.write_lock():
        lake.collect_garbage_locked()  # what a killed writer left behind
        report.batch_id = write_profiles(lake, accepted, file, sha, len(rejects))
    report.accepted, report.rejected = len(accepted), len(rejects)
    if rejects:
        _write_rejects(lake, Path(file).name, rejects, report)
    if report.batch_id is not None:
        update_state(lake)  # the catalog version moved: the state notes it (no day changed)


def _write_rejects(
    lake: Lake, file_name: str, rejects: list[dict[str, Any]], report: IngestReport
) -> None:
    lake.rejects_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{file_name}-{uuid.uuid4().hex[:12]}.ndjson"
    target = lake.rejects_dir / name
    with target.open("w", encoding="utf-8") as fh:
        for item in rejects:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    read_rejects(report, target)


def submit_profiles(
    lake: Lake, records: Sequence[Any], appid: str, now: int | None = None
) -> LiveReport:
    """Check, write and commit the profile records of one request (``POST /v1/profiles``);
    the batch is on disk and committed when this returns."""
    at = now_us() if now is None else now
    report = LiveReport()
    accepted: list[Profile] = []
    for i, record in enumerate(records):
        try:
            if isinstance(record, Unreadable):
                raise RecordError(record.reason)
            accepted.append(check_profile(record, at, parse_ts_us, appid))
        except RecordError as exc:
            report.rejected.append(RejectedRecord(i, str(exc)))
    if accepted:
        with lake.write_lock():
            write_profiles(lake, accepted, "POST /v1/profiles", None, len(report.rejected))
        update_state(lake)
    report.accepted = len(accepted)
    return report
