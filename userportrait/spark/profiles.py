"""``spark ingest --profiles``: profile files read by Spark, checked as ``ingest --profiles`` checks them.

Spark reads the file (any URI it reads: ``s3a://``, ``hdfs://``, …) into the profile
columns with the structural rejects of ``spark/sources.py`` (the same as ``ingest``'s);
the rows then stream to the driver in file order, where the one Python check of every
profile record (``ingest/profiles.check_profile_rows``, ``portrait/profiles.py``) and the
commit (``commit_profiles``) are ``ingest --profiles``'s own. Profiles are one record per
user, so the driver's share is one pass over the users, as for the embedded store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from userportrait.ingest.pipeline import IngestReport
from userportrait.ingest.profiles import PROFILE_INPUT, check_profile_rows, commit_profiles
from userportrait.portrait.profiles import now_us
from userportrait.spark.ingest import source_identity
from userportrait.spark.session import job_failed, spark_errors
from userportrait.spark.sources import open_spark_source, record_numbers
from userportrait.store.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_ingest_profiles_file(
    lake: Lake, spark: SparkSession, uri: str, now: int | None = None
) -> IngestReport:
    """Load one profile file or URI as one batch; ``now``: the time of ingest (epoch µs)."""
    report = IngestReport(file=uri)
    source, frame = open_spark_source(spark, uri, PROFILE_INPUT)
    # Kept apart from event files' digests, as ``ingest --profiles`` keeps them.
    sha = "profiles:" + source_identity(source, spark)
    if lake.catalog.find_batch_by_sha(sha) is not None:
        report.skipped = True
        return report
    at = now_us() if now is None else now
    columns = ["_err", "ts_text", *PROFILE_INPUT.text]
    cached = frame.cache()
    try:
        rows = (
            record_numbers(spark, cached)
            .selectExpr(f"n + {source.line_offset} AS line", *columns)
            .orderBy("line")
            .toLocalIterator()
        )
        accepted, rejects = check_profile_rows((tuple(r) for r in rows), uri, at)
    except spark_errors() as exc:
        raise job_failed(uri, source.format, exc) from None
    finally:
        cached.unpersist()
    commit_profiles(lake, uri, sha, accepted, rejects, report)
    return report
