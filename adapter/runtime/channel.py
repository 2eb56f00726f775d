"""The composition root: settings in, one running adapter out.

`build_channel` validates the settings and builds every part once; `Channel` holds
them and starts and stops them in order. The parts take what they need as arguments
(typed values, services, and one `ChannelEvents` listener), never the settings, so each
can be built alone in a test.

webhook ──store──▶ dispatcher ──▶ bot ──outbox──▶ sender ──▶ Twilio
Twilio ──status callback──▶ StatusRecorder (forward-only) ──▶ bots' status handlers
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from adapter.botframework.bridge import BotFrameworkBridge
from adapter.botframework.config import BotFrameworkConfig
from adapter.config_error import ConfigError
from adapter.delivery.dispatcher import Dispatcher
from adapter.delivery.events import ChannelEvents
from adapter.delivery.media_download import MediaDownloader
from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.proactive import enqueue_text
from adapter.delivery.retry import RetryPolicy
from adapter.delivery.routes import RouteTable
from adapter.delivery.sender import Sender
from adapter.delivery.status_refresh import StatusRefresher
from adapter.delivery.statuses import StatusRecorder
from adapter.history.service import HistoryService
from adapter.networks import Network
from adapter.ratelimit import Limiter
from adapter.runtime.bot_routes import build_route_table, route_specs
from adapter.runtime.metrics import Metrics
from adapter.runtime.settings import Settings
from adapter.store.base import Store
from adapter.store.factory import store_for
from adapter.twilio.client import TwilioClient
from adapter.twilio.messages import OutboundMessage
from adapter.twilio.signature import SignatureValidator

logger = logging.getLogger("adapter")


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
    # The AccountSids a webhook may name: ours and SMS_ADAPTER_SUBACCOUNTS.
    accounts: frozenset[str]
    accepting: bool = False

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
    ) -> int:
        """Text a person first (a proactive message), through the same outbox as replies.

        Returns the outbox id. Ordering is kept with the replies of the conversation.
        Raises `adapter.bot.context.RecipientOptedOut` if the person texted STOP to that sender.
        """
        message = OutboundMessage(
            to=to,
            body=body,
            from_=from_,
            messaging_service_sid=messaging_service_sid,
            media_urls=tuple(media),
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
        scope=settings.botframework_scope,
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
    client = TwilioClient(credentials, settings.twilio_base_url, http=http)
    media = MediaDownloader(credentials, settings.twilio_base_url, http=http)
    # One record of who opted out, consulted by bots' replies, sends and status callbacks.
    opt_outs = OptOuts(store)
    policy = RetryPolicy(
        max_attempts=settings.send_max_attempts,
        max_age=settings.send_max_age,
    )
    sender = Sender(
        store,
        client,
        limiter,
        policy,
        status_callback_url=settings.status_callback_url,
        concurrency=settings.max_concurrency,
        opt_outs=opt_outs,
        events=metrics,
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
    )
    statuses = StatusRecorder(store, routes, opt_outs, events=metrics)
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
        accounts=frozenset({credentials.account_sid, *settings.subaccounts}),
        status_refresher=StatusRefresher(
            store,
            client,
            statuses.record,
            refresh_after=settings.status_refresh_after,
        ),
    )


__all__ = ["Channel", "build_channel"]
