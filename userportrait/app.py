"""``create_app(settings)``: the ASGI app, its routes, error handler and lifespan.

Nothing is opened at import time or in ``create_app`` itself: the lifespan opens the lake,
the engine (``get_engine(settings.engine, lake)``), the app/token store and live ingestion,
and puts them on ``app.state``; it runs the ticket push and the retention
(``USERPORTRAIT_RETENTION_DAYS``) as background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from userportrait import __version__
from userportrait.api import component, dashboard, doors, errors, forget, metrics, native, wechat
from userportrait.api.access import RequestContext
from userportrait.api.body import BodyLimit
from userportrait.api.cache import PortraitCache
from userportrait.auth.allowlist import parse_networks
from userportrait.auth.callers import Callers
from userportrait.auth.component import ComponentStore
from userportrait.auth.limits import SecretGuard
from userportrait.auth.policy import Policy
from userportrait.auth.quota import Quota
from userportrait.auth.store import AuthStore
from userportrait.dashboard.sessions import SessionStore
from userportrait.engine import get_engine
from userportrait.runtime import tune_process
from userportrait.settings import Settings
from userportrait.store.lake import Lake
from userportrait.store.thresholds import Thresholds


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_process()
        lake = Lake(settings)
        lake.collect_garbage()
        engine = get_engine(settings.engine, lake)
        app.state.settings = settings
        app.state.lake = lake
        app.state.engine = engine
        app.state.auth = AuthStore(
            settings.data_dir / "meta.sqlite",
            ttl_s=settings.token_ttl_s,
            overlap_s=settings.token_overlap_s,
        )
        # Third-party platforms, API-security keys, allow-lists, persisted quotas.
        app.state.components = ComponentStore(settings.data_dir / "component.sqlite")
        app.state.callers = Callers(app.state.auth, app.state.components)
        app.state.policy = policy = Policy(settings.data_dir / "access.sqlite")
        app.state.trusted_proxies = parse_networks(settings.trusted_proxies.split(","))
        app.state.quota = Quota(settings.quota_per_day, settings.quota_per_minute, policy=policy)
        app.state.guard = SecretGuard(
            per_app=settings.secret_failures_per_app,
            per_client=settings.secret_failures_per_client,
            concurrent=settings.secret_checks_concurrent,
            queue=settings.secret_checks_queue,
        )
        app.state.thresholds = Thresholds(settings.data_dir / "meta.sqlite")
        app.state.sessions = SessionStore(
            settings.data_dir,
            session_ttl_s=settings.dashboard_session_ttl_s,
            link_ttl_s=settings.dashboard_link_ttl_s,
            app_grant=app.state.auth.grant,
        )
        # What every route asks for a portrait: ``await app.state.portraits.run(query)``.
        app.state.portraits = PortraitCache(
            lake,
            engine,
            size=settings.portrait_cache_entries,
            mode="begin" if settings.ref_date_mode == "begin" else "range",
            time_limit_ms=settings.query_time_limit_ms,
        )
        live = None
        if settings.live_ingest:
            from userportrait.ingest.live import LiveIngest

            live = LiveIngest(
                lake,
                flush_interval_ms=settings.live_flush_interval_ms,
                max_pending_events=settings.live_max_pending_events,
                compact_files=settings.live_compact_files,
            )
            await run_in_threadpool(live.start)
        app.state.live = live
        pushing = None
        if settings.component_ticket_push_s > 0:
            from userportrait.auth.ticket_push import push_loop

            comps = app.state.components
            pushing = asyncio.create_task(
                push_loop(comps.callbacks, comps.ticket, settings.component_ticket_push_s)
            )
        retaining = None
        if settings.retention_days > 0:
            from userportrait.store.expire import retention_loop

            retaining = asyncio.create_task(retention_loop(lake, settings.retention_days))
        try:
            yield
        finally:
            for task in (pushing, retaining):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if live is not None:
                await run_in_threadpool(live.stop)
            engine.close()
            policy.close()

    app = FastAPI(
        title="userportrait",
        version=__version__,
        description=(
            "WeChat-compatible user portraits (analysis.getUserPortrait) and a native API. "
            "Errors are HTTP 200 with `{errcode, errmsg}` (docs/api.md)."
        ),
        lifespan=lifespan,
        docs_url=None,  # served by api.dashboard from the package's assets (works offline)
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(wechat.router)
    app.include_router(component.router)
    app.include_router(native.router)
    app.include_router(native.health)
    app.include_router(metrics.router)
    app.include_router(forget.router)
    dashboard.install(app)
    if settings.live_ingest:
        from userportrait.api import events, profiles

        app.include_router(events.router)
        app.include_router(profiles.router)
    # Every route declares its door; a success that skipped a step becomes -1 (api/doors.py).
    doors.install(app)
    # Every body is limited while it streams in (docs/api.md); RequestContext stays outermost.
    app.add_middleware(
        BodyLimit,
        default=settings.max_body_bytes,
        per_path={
            "/v1/events": settings.live_max_body_bytes,
            "/v1/profiles": settings.live_max_body_bytes,
            "/v1/forget": settings.live_max_body_bytes,
        },
    )
    app.add_middleware(RequestContext)
    return app
