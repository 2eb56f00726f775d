"""create_app(settings) → the Starlette app; its lifespan starts and stops the workers.

webhook ──store──▶ dispatcher ──▶ bot ──outbox──▶ sender ──▶ Twilio
Twilio ──status callback──▶ store (forward-only) ──▶ bots' status handlers
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from adapter import admin
from adapter.bots import RouteTable, build_route_table
from adapter.delivery.dispatcher import Dispatcher
from adapter.delivery.ratelimit import AccountLimiter, Limiter, parse_rate
from adapter.delivery.retry import RetryPolicy, parse_duration
from adapter.delivery.sender import Sender
from adapter.delivery.status_refresh import StatusRefresher
from adapter.events import ChannelEvents
from adapter.messages import OutboundMessage
from adapter.request_url import parse_trusted_proxies
from adapter.routing import StatusUpdate
from adapter.settings import ConfigError, Settings
from adapter.store.base import ReplyDraft, Store
from adapter.store.sqlite import SQLiteStore
from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.signature import SignatureValidator
from adapter.webhooks import messaging_webhook, status_callback

logger = logging.getLogger("adapter")


def _setting(name: str, parse: Any, value: str) -> Any:
    try:
        return parse(value)
    except ValueError as error:
        raise ConfigError(f"{name} {value!r} is invalid: {error}") from None


@dataclass
class Channel:
    """Everything one running adapter is made of, wired together."""

    settings: Settings
    store: Store
    routes: RouteTable
    client: TwilioClient
    limiter: Limiter
    events: ChannelEvents
    trusted_proxies: list[Any] = field(default_factory=list)
    accepting: bool = False

    def __post_init__(self) -> None:
        settings = self.settings
        self.signatures = SignatureValidator(settings.webhook_tokens, settings.webhook_shared_key)
        policy = RetryPolicy(
            max_attempts=settings.send_max_attempts,
            max_age=_setting("SMS_ADAPTER_SEND_MAX_AGE", parse_duration, settings.send_max_age),
        )
        self.sender = Sender(
            self.store,
            self.client,
            self.limiter,
            policy,
            status_callback_url=settings.status_callback_url,
            concurrency=settings.max_concurrency,
        )
        self.dispatcher = Dispatcher(
            self.store,
            self.routes,
            concurrency=settings.bot_concurrency,
            on_replies_committed=self.sender.wake,
            observe_handling=self.events.bot_handled,
        )
        self.status_refresher = StatusRefresher(
            self.store,
            self.client,
            self.record_status,
            refresh_after=_setting(
                "SMS_ADAPTER_STATUS_REFRESH_AFTER", parse_duration, settings.status_refresh_after
            ),
        )

    async def start(self) -> None:
        await self.store.open()
        self.dispatcher.start()
        self.sender.start()
        self.status_refresher.start()
        self.accepting = True

    async def stop(self) -> None:
        """Stop taking texts, finish or hand back what is in flight, close everything."""
        self.accepting = False
        timeout = self.settings.shutdown_timeout
        await self.dispatcher.stop(timeout)
        await self.sender.stop(timeout)
        await self.status_refresher.stop()
        await self.client.aclose()
        await self.store.close()

    async def send_text(
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        media: Sequence[str] = (),
    ) -> int:
        """Text a person first (a proactive message), through the same outbox as replies.

        Returns the outbox id. Ordering is kept with the replies of the conversation.
        """
        message = OutboundMessage(
            to=to,
            body=body,
            from_=from_,
            messaging_service_sid=messaging_service_sid,
            media_urls=tuple(media),
        )
        [outbox_id] = await self.store.enqueue_outbound(
            [ReplyDraft(conversation=str(message.conversation), payload=message.to_json())]
        )
        self.sender.wake()
        return outbox_id

    async def record_status(self, message_sid: str, status: str, error_code: int | None) -> None:
        self.events.status_callback(status)
        record = await self.store.update_status(message_sid, status, error_code)
        if record is None or record.twilio_status != status:
            return  # not ours, or a late status that would move backwards
        message = OutboundMessage.from_json(record.payload)
        route = self.routes.resolve(message.from_ or "", message.messaging_service_sid)
        if route is None:
            return
        update = StatusUpdate(
            message_sid=message_sid,
            status=status,
            error_code=error_code,
            to=message.to,
            from_=message.from_,
            body=message.body,
            conversation=record.conversation,
        )
        try:
            await route.router.dispatch_status(update)
        except Exception:
            logger.exception("status handler of bot %s raised for %s", route.bot_name, message_sid)


def build_channel(
    settings: Settings,
    *,
    store: Store | None = None,
    http: httpx.AsyncClient | None = None,
    events: ChannelEvents | None = None,
) -> Channel:
    """Validate settings and assemble the channel; ConfigError names any bad setting."""
    settings.require_credentials()
    assert settings.account_sid is not None and settings.auth_token is not None
    if settings.api_key and settings.api_secret:
        credentials = Credentials(settings.account_sid, settings.api_key, settings.api_secret)
    else:
        credentials = Credentials(settings.account_sid, settings.account_sid, settings.auth_token)
    limiter = AccountLimiter(
        max_concurrency=settings.max_concurrency,
        rate=_setting("SMS_ADAPTER_RATE_LIMIT", parse_rate, settings.rate_limit),
        per_sender_mps=settings.sender_mps,
    )
    try:
        trusted = parse_trusted_proxies(settings.trusted_proxies)
    except ValueError as error:
        raise ConfigError(f"SMS_ADAPTER_TRUSTED_PROXIES is invalid: {error}") from None
    try:
        routes = build_route_table(settings)
    except ConfigError as error:
        where = "[[routes]] in the config file" if settings.routes else "SMS_ADAPTER_BOTS"
        raise ConfigError(f"{where}: {error}") from None
    return Channel(
        settings=settings,
        store=store or SQLiteStore(settings.database),
        routes=routes,
        client=TwilioClient(credentials, settings.twilio_base_url, http=http),
        limiter=limiter,
        events=events or ChannelEvents(),
        trusted_proxies=list(trusted),
    )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    channel: Channel = request.app.state.channel
    if channel.accepting:
        return JSONResponse({"ready": True})
    return JSONResponse({"ready": False}, status_code=503)


def create_app(
    settings: Settings,
    *,
    channel: Channel | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Starlette:
    """The adapter as an ASGI app. `extra_routes` come after the adapter's own (dev mode
    mounts the Twilio emulator there)."""
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
        *admin.routes(),
        *extra_routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.channel = channel
    return app


def app_from_environment() -> Starlette:
    """For `uvicorn adapter.app:app_from_environment --factory`."""
    import os

    from adapter.settings import load_settings

    settings, warnings = load_settings(os.environ)
    for warning in warnings:
        logger.warning(warning)
    return create_app(settings)


__all__ = ["Channel", "build_channel", "create_app"]
