"""create_app(settings) → the Starlette app; its lifespan starts and stops the channel.

The routes: Twilio's webhooks, health, metrics, the operator API and the Bot Framework
connector, behind one auth middleware (`adapter.web.auth`) and one store-error handler.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from adapter.botframework import connector as botframework_connector
from adapter.botframework.connector_path import PATH_PREFIX
from adapter.logs import LogThrottle
from adapter.runtime.channel import Channel, build_channel
from adapter.runtime.settings import Settings
from adapter.web import admin, history_api
from adapter.web.auth import AdminAccess, AdminAuthMiddleware
from adapter.web.body_limit import (
    CONNECTOR_MAX_BODY_BYTES,
    DEFAULT_MAX_BODY_BYTES,
    BodyLimitMiddleware,
)
from adapter.web.errors import EXCEPTION_HANDLERS
from adapter.web.metrics import metrics_endpoint
from adapter.web.readiness import StoreReadiness
from adapter.web.state import channel_of
from adapter.web.webhooks import messaging_webhook, status_callback

logger = logging.getLogger("adapter")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    if not channel_of(request).accepting:
        return JSONResponse({"ready": False, "reason": "not started or shutting down"}, 503)
    readiness: StoreReadiness = request.app.state.readiness
    problem = await readiness.problem()
    if problem is not None:
        return JSONResponse({"ready": False, "reason": problem}, status_code=503)
    return JSONResponse({"ready": True})


def create_app(
    settings: Settings,
    *,
    channel: Channel | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Starlette:
    """The adapter as an ASGI app. `extra_routes` come after the adapter's own (the dev
    console, and in dev mode the Twilio emulator)."""
    channel = channel or build_channel(settings)
    if not settings.validate_signatures:
        logger.warning(
            "SMS_ADAPTER_VALIDATE_SIGNATURES is off: ANYONE can post texts to this adapter. "
            "Never run like this where the internet can reach it."
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await channel.start()
        try:
            yield
        finally:
            await channel.stop()
            for hook in on_shutdown:
                await hook()

    routes: list[BaseRoute] = [
        Route("/api/sms", messaging_webhook, methods=["POST"]),
        Route("/api/sms/status", status_callback, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *admin.routes(),
        *history_api.routes(),
        *botframework_connector.routes(),
        *extra_routes,
    ]
    access = AdminAccess(settings.admin_token, dev_mode=settings.dev_mode)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            # Outermost: an oversized body is refused before anything else looks at it.
            Middleware(
                BodyLimitMiddleware,
                default=DEFAULT_MAX_BODY_BYTES,
                by_prefix=[(PATH_PREFIX + "/", CONNECTOR_MAX_BODY_BYTES)],
            ),
            Middleware(AdminAuthMiddleware, access=access),
        ],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.channel = channel
    app.state.readiness = StoreReadiness(channel.store)
    app.state.rejection_log = LogThrottle(interval=10.0, burst=10)
    return app


__all__ = ["create_app"]
