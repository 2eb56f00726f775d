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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.botframework import connector as botframework_connector
from adapter.botframework.connector_path import PATH_PREFIX
from adapter.config_error import ConfigError
from adapter.logs import LogThrottle
from adapter.runtime.channel import Channel, build_channel
from adapter.runtime.settings import Settings
from adapter.store.base import StoreError
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
    channel = channel_of(request)
    details: dict[str, object] = {"ready": channel.accepting}
    if not channel.accepting:
        details["reason"] = "not started or shutting down"
    else:
        readiness: StoreReadiness = request.app.state.readiness
        problem = await readiness.problem()
        if problem is not None:
            details |= {"ready": False, "reason": problem}
    if channel.catchup is not None:
        details["catchup"] = await catchup_details(channel)
    return JSONResponse(details, status_code=200 if details["ready"] else 503)


async def catchup_details(channel: Channel) -> dict[str, object]:
    """Inbound catch-up as /readyz shows it: the fleet's watermark (texts Twilio received
    before it have all been looked for) and this replica's last round."""
    assert channel.catchup is not None
    try:
        watermark = await channel.store.catchup_watermark()
    except StoreError:
        shown: str | None = "unknown (the store is unavailable)"
    else:
        shown = watermark.isoformat() if watermark is not None else None
    report, at = channel.catchup.last_round, channel.catchup.last_round_at
    last_round: dict[str, object] | None = None
    if report is not None and at is not None:
        last_round = {
            "at": at.isoformat(),
            "by_this_replica": report.held_lease,
            "complete": report.complete,
            "requests": report.requests,
            "caught_up": report.caught_up,
            "too_old": report.too_old,
            "error": report.error,
        }
    return {"watermark": shown, "last_round": last_round}


class CleanStartupFailure:
    """A start-up stopped by configuration the user can fix (a bot's startup hook that
    raised) ends with its one-line message, not Starlette's traceback of the lifespan
    (the hook's own traceback is logged where it failed)."""

    def __init__(self, app: ASGIApp, failures: list[ConfigError]) -> None:
        self.app = app
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_clean(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.failures:
                message = {**message, "message": str(self.failures[-1])}
            await send(message)

        await self.app(scope, receive, send_clean)


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

    startup_failures: list[ConfigError] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await channel.start()
        except ConfigError as error:  # a bot's startup hook failed
            startup_failures.append(error)
            raise
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
            Middleware(CleanStartupFailure, failures=startup_failures),
            Middleware(AdminAuthMiddleware, access=access),
        ],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.channel = channel
    app.state.readiness = StoreReadiness(channel.store)
    app.state.rejection_log = LogThrottle(interval=10.0, burst=10)
    return app


__all__ = ["create_app"]
