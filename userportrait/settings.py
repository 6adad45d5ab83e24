"""The one settings object. Built explicitly (``Settings.from_env()``), never at import time.

Every field has a default and a help line in ``SETTINGS``; environment variables carry the
``USERPORTRAIT_`` prefix and their unit in the name. ``docs/settings.md`` lists them all
(a test keeps it in step).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ENV_PREFIX: Final = "USERPORTRAIT_"


def default_data_dir() -> Path:
    """``$USERPORTRAIT_DATA_DIR``, else ``$XDG_DATA_HOME/userportrait`` (~/.local/share)."""
    env = os.environ.get(f"{ENV_PREFIX}DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "userportrait"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    engine: str = "incremental"
    duckdb_memory_limit_mb: int = 1024
    duckdb_threads: int = 2
    host: str = "127.0.0.1"
    port: int = 8000
    wechat_limits: bool = True
    ref_date_mode: str = "range"
    token_ttl_s: int = 7200
    token_overlap_s: int = 300
    quota_per_day: int = 0
    quota_per_minute: int = 0
    query_time_limit_ms: int = 30_000
    portrait_cache_entries: int = 512
    wechat_base_url: str = "https://api.weixin.qq.com"
    api_security_window_s: int = 300
    trusted_proxies: str = ""
    http_impl: str = "h11"
    component_ticket_push_s: int = 600
    live_ingest: bool = True
    live_flush_interval_ms: int = 2000
    live_max_pending_events: int = 2_000_000
    live_max_batch_records: int = 10_000
    live_max_body_bytes: int = 16 * 1024 * 1024
    live_compact_files: int = 16
    retention_days: int = 0
    live_parses_concurrent: int = 2
    live_parses_queue: int = 16
    max_body_bytes: int = 64 * 1024
    http_read_timeout_s: float = 30.0
    http_idle_timeout_s: float = 5.0
    http_header_timeout_s: float = 30.0
    metrics_open: bool = False
    http_max_connections_per_address: int = 64
    secret_failures_per_app: int = 10
    secret_failures_per_client: int = 20
    secret_checks_concurrent: int = 2
    secret_checks_queue: int = 8
    dashboard_session_ttl_s: int = 28_800
    dashboard_link_ttl_s: int = 600
    spark_master: str = "local[*]"
    spark_conf: str = ""
    spark_lake_uri: str = ""
    store_raw_ip: bool = False
    log_format: str = "text"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``USERPORTRAIT_*`` variables, then explicit (non-None) overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _convert(type_name: object, raw: str, name: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}: cannot read {raw!r} as {kind}") from None
    return raw


#: One help line per setting (rendered into docs/settings.md).
SETTINGS: Final[dict[str, str]] = {
    "data_dir": "Directory holding the event lake, derived state and metadata.",
    "engine": "Engine that computes portraits: incremental (default; the incremental store, also accepted as duckdb), sql (one DuckDB query over the lake), reference (pure Python, row by row) or spark (Spark SQL over the lake; the `spark` extra).",
    "duckdb_memory_limit_mb": "Memory limit for DuckDB work (ingest and queries), in MiB; one limit per process, shared by its concurrent work.",
    "duckdb_threads": "Threads DuckDB may use.",
    "host": "Address `serve` binds to.",
    "port": "Port `serve` listens on (0 picks a free one).",
    "wechat_limits": "Enforce WeChat's limits on the datacube API: 1/7/30-day spans, end <= yesterday.",
    "ref_date_mode": "`range` (yyyymmdd-yyyymmdd for multi-day windows) or `begin` (always yyyymmdd).",
    "token_ttl_s": "Lifetime of an access_token, in seconds.",
    "token_overlap_s": "How long the previous token stays valid after /cgi-bin/token issues a new one.",
    "quota_per_day": "Datacube calls allowed per app per day (0 = unlimited); beyond it 45009.",
    "quota_per_minute": "Datacube calls allowed per app per minute (0 = unlimited); beyond it 45011.",
    "query_time_limit_ms": "Time limit for one portrait request, in milliseconds; beyond it -1 system busy.",
    "portrait_cache_entries": "Answers kept in the server's LRU cache (keyed by window and store version).",
    "wechat_base_url": "Base URL that API-security signatures name (WeChat's own host).",
    "api_security_window_s": "API-security mode: how far Wechatmp-TimeStamp may be from now, in seconds; nonces are remembered this long.",
    "http_impl": "uvicorn's HTTP/1.1 implementation for `serve`: h11 (keeps the Wechatmp-* header casing WxJava looks up) or httptools (faster; lowercases header names).",
    "component_ticket_push_s": "How often `serve` pushes each third-party platform's component_verify_ticket to its callback URL, in seconds (0 = never).",
    "metrics_open": "Serve `GET /metrics` without the dashboard admin key (a scraper on a private network); by default it takes the key as a Bearer token.",
    "trusted_proxies": "Comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed for IP allow-lists and per-address limits (empty = always the TCP peer; uvicorn's own X-Forwarded-For handling is off).",
    "live_ingest": "Accept events over HTTP (POST /v1/events) through the write-ahead log, and profiles (POST /v1/profiles).",
    "live_flush_interval_ms": "How often received events are loaded into the store (visible in portraits), in ms.",
    "retention_days": "`serve` deletes the events of days older than this many days before today (Asia/Shanghai), at start and every 24 h, keeping each user's first day; windows that start earlier are refused with 61501 (0 = keep forever; 30 or more keeps WeChat's 30-day window; docs/operations.md, Retention).",
    "live_compact_files": "After a flush, merge a day's lake files into one once it has this many (0 = never).",
    "live_max_pending_events": "Events received but not yet in the store beyond which ingestion answers 503 + Retry-After.",
    "live_max_batch_records": "Records allowed in one POST /v1/events or /v1/profiles request (more: HTTP 413).",
    "live_max_body_bytes": "Bytes allowed in one POST /v1/events or /v1/profiles body, as sent and after gzip decoding (more: HTTP 413).",
    "live_parses_concurrent": "POST /v1/events or /v1/profiles bodies parsed at once (each may take up to ~20x its size in memory).",
    "live_parses_queue": "Bodies allowed to wait for a parse; beyond it -1 system busy (HTTP 503).",
    "max_body_bytes": "Bytes allowed in the body of any other route (more: HTTP 413, before the rest is read).",
    "http_read_timeout_s": "A request whose headers or body stop arriving for this long is answered 408 and closed, in seconds.",
    "http_idle_timeout_s": "A connection with no request in progress is closed after this long, in seconds.",
    "http_header_timeout_s": "A request's headers must be complete this long after its first byte, however slowly they trickle in; else 408 and closed, in seconds.",
    "http_max_connections_per_address": "Connections one client address may hold open at once; more are answered 503 and closed as they open (0 = no limit; `trusted_proxies` are exempt).",
    "secret_failures_per_app": "Wrong secrets per appid per minute before token calls answer 45011 (0 = no limit; addresses that gave the right secret are exempt).",
    "secret_failures_per_client": "Wrong secrets per client address per minute before its token calls answer 45011 (0 = no limit).",
    "secret_checks_concurrent": "Secret checks (scrypt, ~16 MiB each) running at once.",
    "secret_checks_queue": "Secret checks allowed to wait for a slot; beyond it -1 system busy (HTTP 503).",
    "dashboard_session_ttl_s": "Lifetime of a dashboard sign-in session, in seconds; then the page asks again.",
    "dashboard_link_ttl_s": "How long a `userportrait dashboard link` sign-in link can be used (once), in seconds.",
    "spark_master": "Where Spark runs: `local[*]`, a cluster master URL (`spark://…`, `k8s://…`, `yarn`) or Spark Connect (`sc://host:port`).",
    "spark_conf": "Spark configuration passed through, `key=value` pairs separated by `;` (e.g. `spark.executor.memory=8g;spark.sql.shuffle.partitions=800`).",
    "store_raw_ip": "Keep each event's raw `ip` in the lake (personal data); off: only its /24 or /48 prefix and the region derived from it.",
    "log_format": "`text` (time, level, logger, message) or `json` (one JSON object per line: time, level, logger, message, rid when there is one, exc for a traceback; access lines carry their fields) for `serve`, uvicorn included, and the CLI.",
    "spark_lake_uri": "The data directory as Spark's executors see it (e.g. `s3a://bucket/userportrait`, `hdfs:///userportrait`); empty = the local path.",
}
