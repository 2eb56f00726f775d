"""The composition root: settings in, one running adapter out.

`build_channel` validates the settings and builds every part once; `Channel` holds
them and starts and stops them in order. The parts take what they need as arguments
(typed values, services, and one `ChannelEvents` listener), never the settings, so each
can be built alone in a test.

webhook ──store──▶ dispatcher ──▶ bot ──outbox──▶ sender ──▶ Twilio
Twilio ◀──List Messages── InboundCatchUp ──store──▶ (the same dispatcher)
Twilio ──status callback──▶ StatusRecorder (forward-only) ──▶ bots' status handlers
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from adapter.bot.context import checked_send_options
from adapter.botframework.bridge import BotFrameworkBridge
from adapter.botframework.config import BotFrameworkConfig
from adapter.botframework.records import KEY_PREFIX as BOTFRAMEWORK_RECORD_PREFIX
from adapter.config_error import ConfigError
from adapter.delivery.catchup import InboundCatchUp
from adapter.delivery.dispatcher import Dispatcher
from adapter.delivery.events import ChannelEvents
from adapter.delivery.lifecycle import BotLifecycle, BotStartupError
from adapter.delivery.media_download import MediaDownloader
from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.our_numbers import OurNumbers
from adapter.delivery.proactive import enqueue_text
from adapter.delivery.retention import RetentionWorker
from adapter.delivery.retry import RetryPolicy
from adapter.delivery.routes import RouteTable
from adapter.delivery.scheduling import cancel_scheduled
from adapter.delivery.sender import Sender
from adapter.delivery.status_refresh import StatusRefresher
from adapter.delivery.statuses import StatusRecorder
from adapter.history.service import HistoryService
from adapter.networks import Network
from adapter.ratelimit import Limiter
from adapter.runtime.bot_routes import build_route_table, route_specs
from adapter.runtime.metrics import Metrics
from adapter.runtime.settings import Settings
from adapter.store.base import OutboundRecord, Store
from adapter.store.factory import store_for
from adapter.twilio.account import AccountClient
from adapter.twilio.client import TwilioClient
from adapter.twilio.messages import OutboundMessage
from adapter.twilio.signature import SignatureValidator

logger = logging.getLogger("adapter")

# How long the dispatcher waits at start for the first catch-up round, so that texts
# found late go before the later texts of their conversations (the store orders them).
FIRST_ROUND_WAIT = 30.0


@dataclass
class Channel:
    """Everything one running adapter is made of, wired together by `build_channel`."""

    settings: Settings
    store: Store
    routes: RouteTable
    client: TwilioClient
    limiter: Limiter
    events: ChannelEvents
    metrics: Metrics | None
    media: MediaDownloader | None
    trusted_proxies: list[Network]
    signatures: SignatureValidator
    opt_outs: OptOuts
    sender: Sender
    history: HistoryService
    dispatcher: Dispatcher
    botframework: BotFrameworkBridge
    statuses: StatusRecorder
    status_refresher: StatusRefresher
    retention: RetentionWorker
    bots: BotLifecycle
    # The AccountSids a webhook may name: ours and SMS_ADAPTER_SUBACCOUNTS.
    accounts: frozenset[str]
    catchup: InboundCatchUp | None = None  # None: SMS_ADAPTER_CATCHUP_INTERVAL is off
    accepting: bool = False
    _dispatcher_start: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        # Work committed by other replicas (PostgreSQL) wakes our workers at once.
        self.store.watch_for_work(self.dispatcher.wake, self.sender.wake)
        await self.store.open()
        try:
            await self.bots.start()  # before the first text: the bots' clients are open
        except BotStartupError:
            await self.store.close()
            raise
        self.sender.start()
        self.status_refresher.start()
        self.retention.start()
        if self.catchup is None:
            self.dispatcher.start()
        else:
            self.catchup.start()
            # Webhooks are taken (stored) meanwhile; only handling waits.
            self._dispatcher_start = asyncio.create_task(self._start_dispatcher_after_catchup())
        self.accepting = True

    async def cancel_scheduled(self, outbox_id: int) -> OutboundRecord:
        """Cancel a scheduled message; see `adapter.delivery.scheduling.cancel_scheduled`."""
        return await cancel_scheduled(
            outbox_id,
            store=self.store,
            client=self.client,
            limiter=self.limiter,
            statuses=self.statuses,
        )

    async def _start_dispatcher_after_catchup(self) -> None:
        assert self.catchup is not None
        if not await self.catchup.first_round(FIRST_ROUND_WAIT):
            logger.warning(
                "the first inbound catch-up round is still running after %.0fs; "
                "handling texts meanwhile",
                FIRST_ROUND_WAIT,
            )
        self.dispatcher.start()

    async def stop(self) -> None:
        """Stop taking texts, finish or hand back what is in flight, close everything."""
        self.accepting = False
        timeout = self.settings.shutdown_timeout
        if self._dispatcher_start is not None:
            self._dispatcher_start.cancel()
            await asyncio.gather(self._dispatcher_start, return_exceptions=True)
        if self.catchup is not None:
            await self.catchup.stop()
        await self.dispatcher.stop(timeout)
        await self.bots.stop()
        await self.botframework.aclose()
        await self.sender.stop(timeout)
        await self.status_refresher.stop()
        await self.retention.stop()
        await self.statuses.aclose()
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
        validity_period: int | timedelta | None = None,
        max_price: str | Decimal | None = None,
        smart_encoded: bool | None = None,
        shorten_urls: bool | None = None,
        send_as_mms: bool | None = None,
        send_at: datetime | None = None,
        content_sid: str | None = None,
        content_variables: Mapping[str, Any] | None = None,
    ) -> int:
        """Text a person first (a proactive message), through the same outbox as replies.

        Returns the outbox id. Ordering is kept with the replies of the conversation.
        The keyword options are `ctx.reply()`'s, checked the same way: a bad one raises
        `adapter.bot.context.InvalidReplyOption` naming it, before anything is queued.
        Raises `adapter.bot.context.RecipientOptedOut` if the person texted STOP to that sender.
        """
        options = checked_send_options(
            "send_text()",
            {
                "validity_period": validity_period,
                "max_price": max_price,
                "smart_encoded": smart_encoded,
                "shorten_urls": shorten_urls,
                "send_as_mms": send_as_mms,
                "send_at": send_at,
                "content_sid": content_sid,
                "content_variables": content_variables,
            },
            messaging_service_sid=messaging_service_sid,
            now=datetime.now(UTC),
        )
        message = OutboundMessage(
            to=to,
            body=body,
            from_=from_,
            messaging_service_sid=messaging_service_sid,
            media_urls=tuple(media),
            options=options,
        )
        outbox_id = await enqueue_text(self.store, self.opt_outs, message)
        self.sender.wake()
        return outbox_id


def open_store(settings: Settings) -> Store:
    """The store SMS_ADAPTER_DATABASE names (not opened yet)."""
    try:
        return store_for(settings.database)
    except ValueError as error:  # the message never holds the URL's password
        raise ConfigError(f"SMS_ADAPTER_DATABASE is invalid: {error}") from None


def account_limiter(settings: Settings, store: Store) -> Limiter:
    """Twilio's limits for our account, kept where the store can keep them: fleet-wide on
    PostgreSQL (replicas share one account), in-process on SQLite."""
    return store.limiter(
        max_concurrency=settings.max_concurrency,
        rate=settings.rate_limit,
        per_sender_mps=settings.sender_mps,
    )


def botframework_config(settings: Settings) -> BotFrameworkConfig:
    return BotFrameworkConfig(
        public_url=settings.public_url,
        secret_key=settings.botframework_secret or settings.auth_token,
        default_auth=settings.botframework_auth,
        timeout=settings.botframework_timeout,
        send_max_age=settings.send_max_age,
        app_id=settings.botframework_app_id,
        app_password=settings.botframework_app_password,
        token_url=settings.botframework_token_url,
        openid_metadata=settings.botframework_openid_metadata,
        bot_app_id=settings.botframework_bot_app_id,
        scope=settings.botframework_scope,
        allowed_callers=settings.botframework_allowed_callers,
        issuers=settings.botframework_issuer,
        audience=settings.botframework_audience,
    )


@dataclass
class HistoryTools:
    """What `sms-adapter history` needs: no bots, no workers, no web app."""

    store: Store
    client: TwilioClient
    service: HistoryService
    route_keys: list[str]  # our numbers and services, as the routes name them

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.store.close()


def build_history_tools(settings: Settings) -> HistoryTools:
    store = open_store(settings)
    client = TwilioClient(settings.rest_credentials(), settings.twilio_base_url)
    try:
        keys = [spec.key for spec in route_specs(settings)]
    except ConfigError as error:
        where = "[[routes]] in the config file" if settings.routes else "SMS_ADAPTER_BOTS"
        raise ConfigError(f"{where}: {error}") from None
    service = HistoryService(store, client, account_limiter(settings, store))
    return HistoryTools(store, client, service, keys)


def build_channel(
    settings: Settings,
    *,
    store: Store | None = None,
    http: httpx.AsyncClient | None = None,
) -> Channel:
    """Validate settings and assemble the channel; ConfigError names any bad setting."""
    credentials = settings.rest_credentials()
    store = store if store is not None else open_store(settings)
    limiter = account_limiter(settings, store)
    try:
        routes = build_route_table(settings)
    except ConfigError as error:
        where = "[[routes]] in the config file" if settings.routes else "SMS_ADAPTER_BOTS"
        raise ConfigError(f"{where}: {error}") from None
    metrics = Metrics()
    # One client for every REST call: messages, and the account's numbers for catch-up.
    client = AccountClient(credentials, settings.twilio_base_url, http=http)
    media = MediaDownloader(credentials, settings.twilio_base_url, http=http)
    # One record of who opted out, consulted by bots' replies, sends and status callbacks.
    opt_outs = OptOuts(store)
    policy = RetryPolicy(
        max_attempts=settings.send_max_attempts,
        max_age=settings.send_max_age,
    )
    statuses = StatusRecorder(store, routes, opt_outs, events=metrics)
    sender = Sender(
        store,
        client,
        limiter,
        policy,
        status_callback_url=settings.status_callback_url,
        application_sid=settings.status_via_application,
        concurrency=settings.max_concurrency,
        opt_outs=opt_outs,
        events=metrics,
        on_unsent=statuses.unsent,
    )
    history = HistoryService(store, client, limiter)
    dispatcher = Dispatcher(
        store,
        routes,
        concurrency=settings.bot_concurrency,
        on_replies_committed=sender.wake,
        opt_outs=opt_outs,
        events=metrics,
        history=history.provider_for,
        long_messages=settings.long_messages,
        opt_out_to_bots=settings.opt_out_to_bots,
        media_download=media.download,
        handler_timeout=settings.handler_timeout,
        error_reply=settings.bot_error_reply or None,
    )
    catchup = None
    if settings.catchup_interval > timedelta(0):
        catchup = InboundCatchUp(
            store,
            client,
            limiter,
            OurNumbers(
                routes,
                client,
                webhook_url=f"{settings.public_url}/api/sms" if settings.public_url else None,
            ),
            holder=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            interval=settings.catchup_interval,
            max_age=settings.catchup_max_age,
            wake=dispatcher.wake,
            events=metrics,
        )
    return Channel(
        settings=settings,
        store=store,
        routes=routes,
        client=client,
        limiter=limiter,
        events=metrics,
        metrics=metrics,
        media=media,
        trusted_proxies=list(settings.trusted_proxies),
        signatures=SignatureValidator(settings.webhook_tokens, settings.webhook_shared_key),
        opt_outs=opt_outs,
        sender=sender,
        history=history,
        dispatcher=dispatcher,
        # Bot Framework bots in the route table post texts through it and reply to it.
        botframework=BotFrameworkBridge(
            botframework_config(settings), store, routes, on_enqueued=sender.wake
        ),
        statuses=statuses,
        bots=BotLifecycle(routes),
        accounts=frozenset({credentials.account_sid, *settings.subaccounts}),
        status_refresher=StatusRefresher(
            store,
            client,
            statuses.record,
            refresh_after=settings.status_refresh_after,
        ),
        retention=RetentionWorker(
            store,
            settings.retention,
            # The bridge's exchange records (who a bot talks to, its last activity) expire;
            # the numbers a bot was texted at stay, as conversation state does.
            expiring_state_prefixes=(BOTFRAMEWORK_RECORD_PREFIX,),
            events=metrics,
        ),
        catchup=catchup,
    )


__all__ = ["Channel", "build_channel"]
