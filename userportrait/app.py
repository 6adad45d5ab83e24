"""``create_app(settings)``: the ASGI app, its routes, error handler and lifespan."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from userportrait import __version__
from userportrait.api import errors, native, wechat
from userportrait.auth.quota import Quota
from userportrait.auth.store import AuthStore
from userportrait.engine import get_engine
from userportrait.errors import Busy
from userportrait.portrait.cached import PortraitCache
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.result import RefDateMode
from userportrait.settings import Settings
from userportrait.store.lake import Lake

access_log = logging.getLogger("userportrait.access")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lake = Lake(settings)
        lake.collect_garbage()
        engine = get_engine(settings.engine, lake)
        cache = PortraitCache(lake, engine)
        limit_s = settings.query_time_limit_ms / 1000

        async def run_portrait(query: PortraitQuery) -> dict[str, Any]:
            mode: RefDateMode = "begin" if settings.ref_date_mode == "begin" else "range"
            try:
                body: dict[str, Any] = await asyncio.wait_for(
                    run_in_threadpool(cache.get, query, mode), limit_s
                )
            except TimeoutError:
                raise Busy(f"portrait took longer than {settings.query_time_limit_ms} ms") from None
            return body

        app.state.settings = settings
        app.state.lake = lake
        app.state.auth = AuthStore(
            settings.data_dir / "meta.sqlite",
            ttl_s=settings.token_ttl_s,
            overlap_s=settings.token_overlap_s,
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
        description="WeChat-compatible user portraits (analysis.getUserPortrait) and a native API.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(wechat.router)
    app.include_router(native.router)
    app.include_router(native.health)
    if settings.live_ingest:
        from userportrait.api import events

        app.include_router(events.router)

    @app.middleware("http")
    async def log_access(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        rid = errors.rid_of(request)
        response = await call_next(request)
        response.headers.setdefault("X-Request-Id", rid)
        access_log.info(json.dumps({
            "rid": rid, "method": request.method, "path": request.url.path,
            "status": response.status_code,
            "ms": round((time.perf_counter() - start) * 1000, 2),
        }))  # fmt: skip
        return response

    return app
