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

from adapter import admin, console, history_api
from adapter.botframework import connector as botframework_connector
from adapter.botframework.bridge import BotFrameworkBridge
from adapter.bots import RouteTable, build_route_table
from adapter.delivery.dispatcher import Dispatcher
from adapter.delivery.early_statuses import EarlyStatuses
from adapter.delivery.ratelimit import Limiter, parse_rate
from adapter.delivery.ratelimit_postgres import limiter_for
from adapter.delivery.retry import RetryPolicy, parse_duration
from adapter.delivery.sender import Sender
from adapter.delivery.status_refresh import StatusRefresher
from adapter.events import ChannelEvents
from adapter.gc_tuning import tune_garbage_collector
from adapter.history import HistoryService
from adapter.logs import configure_logging, message_fields
from adapter.media import MediaDownloader
from adapter.messages import OutboundMessage
from adapter.metrics import Metrics, metrics_endpoint
from adapter.opt_out import OptOuts
from adapter.request_url import parse_trusted_proxies
from adapter.routing import StatusUpdate
from adapter.settings import ConfigError, Settings
from adapter.store.base import ReplyDraft, Store
from adapter.store.factory import store_for
from adapter.twilio.client import TwilioClient
from adapter.twilio.opt_out import UNSUBSCRIBED_ERROR
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
    metrics: Metrics | None = None  # GET /metrics; build_channel always sets it
    media: MediaDownloader | None = None  # ctx.download(); build_channel always sets it

    def __post_init__(self) -> None:
        settings = self.settings
        self.signatures = SignatureValidator(settings.webhook_tokens, settings.webhook_shared_key)
        policy = RetryPolicy(
            max_attempts=settings.send_max_attempts,
            max_age=_setting("SMS_ADAPTER_SEND_MAX_AGE", parse_duration, settings.send_max_age),
        )
        # One record of who opted out, consulted by bots' replies, sends and status callbacks.
        self.opt_outs = OptOuts(self.store)
        self.sender = Sender(
            self.store,
            self.client,
            self.limiter,
            policy,
            status_callback_url=settings.status_callback_url,
            concurrency=settings.max_concurrency,
            opt_outs=self.opt_outs,
            observer=self.events,
        )
        self.history = HistoryService(self.store, self.client, self.limiter)
        self.dispatcher = Dispatcher(
            self.store,
            self.routes,
            concurrency=settings.bot_concurrency,
            on_replies_committed=self.sender.wake,
            opt_outs=self.opt_outs,
            observe_handling=self.events.bot_handled,
            history=self.history.provider_for,
            long_messages=settings.long_messages,
            opt_out_to_bots=settings.opt_out_to_bots,
            media_download=self.media.download if self.media is not None else None,
        )
        # Bot Framework bots in the route table post texts through it and reply to it.
        self.botframework = BotFrameworkBridge(
            settings, self.store, self.routes, on_enqueued=self.sender.wake
        )
        self.early_statuses = EarlyStatuses(self._apply_status)
        self.status_refresher = StatusRefresher(
            self.store,
            self.client,
            self.record_status,
            refresh_after=_setting(
                "SMS_ADAPTER_STATUS_REFRESH_AFTER", parse_duration, settings.status_refresh_after
            ),
        )

    async def start(self) -> None:
        # Work committed by other replicas (PostgreSQL) wakes our workers at once.
        self.store.watch_for_work(self.dispatcher.wake, self.sender.wake)
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
        await self.botframework.aclose()
        await self.sender.stop(timeout)
        await self.status_refresher.stop()
        await self.early_statuses.aclose()
        await self.client.aclose()
        if self.media is not None:
            await self.media.aclose()
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
        Raises `adapter.context.RecipientOptedOut` if the person texted STOP to that sender.
        """
        message = OutboundMessage(
            to=to,
            body=body,
            from_=from_,
            messaging_service_sid=messaging_service_sid,
            media_urls=tuple(media),
        )
        await self.opt_outs.refuse_if_opted_out(message)
        [outbox_id] = await self.store.enqueue_outbound(
            [ReplyDraft(conversation=str(message.conversation), payload=message.to_json())]
        )
        self.sender.wake()
        return outbox_id

    async def record_status(self, message_sid: str, status: str, error_code: int | None) -> None:
        self.events.status_callback(status)
        if not await self._apply_status(message_sid, status, error_code):
            self.early_statuses.hold(message_sid, status, error_code)

    async def _apply_status(self, message_sid: str, status: str, error_code: int | None) -> bool:
        """Record a status and tell the bot; False when the SID is not (yet) known."""
        record = await self.store.update_status(message_sid, status, error_code)
        if record is None:
            return False
        message = OutboundMessage.from_json(record.payload)
        if error_code == UNSUBSCRIBED_ERROR:
            await self.opt_outs.note_unsubscribed(message, f"error {error_code} on {message_sid}")
        if record.twilio_status != status:
            return True  # a late status that would move backwards
        route = self.routes.resolve(message.from_ or "", message.messaging_service_sid)
        if route is None:
            return True
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
            logger.exception(
                "status handler of bot %s raised for %s",
                route.bot_name,
                message_sid,
                extra=message_fields(message_sid, record.conversation, bot=route.bot_name),
            )
        return True


def build_channel(
    settings: Settings,
    *,
    store: Store | None = None,
    http: httpx.AsyncClient | None = None,
) -> Channel:
    """Validate settings and assemble the channel; ConfigError names any bad setting."""
    credentials = settings.rest_credentials()
    if store is None:
        try:
            store = store_for(settings.database)
        except ValueError as error:  # the message never holds the URL's password
            raise ConfigError(f"SMS_ADAPTER_DATABASE is invalid: {error}") from None
    # Fleet-wide on PostgreSQL (replicas share one account), in-process on SQLite.
    limiter = limiter_for(
        store,
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
    metrics = Metrics()
    return Channel(
        settings=settings,
        store=store,
        routes=routes,
        client=TwilioClient(credentials, settings.twilio_base_url, http=http),
        limiter=limiter,
        events=metrics,
        trusted_proxies=list(trusted),
        metrics=metrics,
        media=MediaDownloader(credentials, settings.twilio_base_url, http=http),
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
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *admin.routes(),
        *history_api.routes(),
        *botframework_connector.routes(),
        *console.routes(),
        *extra_routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.channel = channel
    return app


def app_from_environment() -> Starlette:
    """For `uvicorn adapter.app:app_from_environment --factory`. Logging follows the
    SMS_ADAPTER_LOG_* settings (uvicorn's lines too), so secrets are redacted here as well."""
    import os

    from adapter.settings import load_settings

    settings, warnings = load_settings(os.environ)
    configure_logging(settings)
    for warning in warnings:
        logger.warning(warning)
    app = create_app(settings)
    tune_garbage_collector()
    return app


__all__ = ["Channel", "build_channel", "create_app"]
