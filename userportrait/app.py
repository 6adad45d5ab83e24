"""``create_app(settings)``: the ASGI app, its routes, error handler and lifespan.

Nothing is opened at import time or in ``create_app`` itself: the lifespan opens the lake,
the engine (``get_engine(settings.engine, lake)``), the app/token store and live ingestion,
and puts them on ``app.state``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from userportrait import __version__
from userportrait.api import dashboard, errors, native, wechat
from userportrait.api.access import RequestContext
from userportrait.auth.quota import Quota
from userportrait.auth.store import AuthStore
from userportrait.dashboard.sessions import SessionStore
from userportrait.engine import get_engine
from userportrait.portrait.cached import PortraitCache
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.result import RefDateMode
from userportrait.settings import Settings
from userportrait.store.lake import Lake


def create_app(settings: Settings) -> FastAPI:
    mode: RefDateMode = "begin" if settings.ref_date_mode == "begin" else "range"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lake = Lake(settings)
        lake.collect_garbage()
        engine = get_engine(settings.engine, lake)
        cache = PortraitCache(lake, engine, settings.portrait_cache_entries)

        async def run_portrait(query: PortraitQuery) -> dict[str, Any]:
            return await cache.aget(query, mode, settings.query_time_limit_ms)

        app.state.settings = settings
        app.state.lake = lake
        app.state.engine = engine
        app.state.auth = AuthStore(
            settings.data_dir / "meta.sqlite",
            ttl_s=settings.token_ttl_s,
            overlap_s=settings.token_overlap_s,
        )
        app.state.sessions = SessionStore(
            settings.data_dir,
            session_ttl_s=settings.dashboard_session_ttl_s,
            link_ttl_s=settings.dashboard_link_ttl_s,
        )
        app.state.quota = Quota(settings.quota_per_day, settings.quota_per_minute)
        app.state.cache = cache
        app.state.run_portrait = run_portrait
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
        try:
            yield
        finally:
            if live is not None:
                await run_in_threadpool(live.stop)
            engine.close()

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
    app.add_middleware(RequestContext)
    app.include_router(wechat.router)
    app.include_router(native.router)
    app.include_router(native.health)
    dashboard.install(app)
    if settings.live_ingest:
        from userportrait.api import events

        app.include_router(events.router)
    return app
