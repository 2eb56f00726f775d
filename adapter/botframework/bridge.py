"""The bridge between the SMS channel and Bot Framework bots: both halves of a turn.

    text ─▶ dispatcher ─▶ run_turn: record the conversation, POST the activity to the bot
                                      (serviceUrl = our connector path for that bot)
    bot ─▶ connector ─▶ send / create_conversation: look the conversation up in our
                        records, render it for SMS, put it in the outbox ─▶ sender

The bot's replies arrive while its POST is still open; they are separate requests, so
the two halves run side by side.

A post that fails (the bot is down, times out, answers 5xx/429) raises `RetryLater`: the
dispatcher hands the text back to the store to be run again after a backoff, holding back
that conversation's later texts so they still reach the bot in order. A post is not made
again once the bot has answered the text (its reply reached the connector before the
failure): retrying then would text the person the answer twice. After the send retry
budget (SMS_ADAPTER_SEND_MAX_AGE, or 20 attempts) the text is given up on and logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from adapter.bot.context import Context, RetryLater
from adapter.botframework.bot_client import BotClient, Delivered, Refused
from adapter.botframework.config import BotFrameworkConfig
from adapter.botframework.connector_path import connector_secret, service_url
from adapter.botframework.endpoint import BotEndpoint
from adapter.botframework.errors import ConnectorError, bad_request, not_found, unauthorized
from adapter.botframework.jwt_verify import (
    InvalidToken,
    KeysUnavailable,
    TokenVerifier,
    crypto_available,
)
from adapter.botframework.log_redaction import ReplaceInLogs
from adapter.botframework.records import (
    ConversationRecord,
    ConversationRecords,
    conversation_id_of,
    is_legacy_id,
)
from adapter.botframework.remote_bot import RemoteBotRouter
from adapter.botframework.render import render_message
from adapter.botframework.tokens import TokenSource
from adapter.config_error import ConfigError
from adapter.delivery.retry import GiveUp, RetryPolicy
from adapter.delivery.routes import DEFAULT_KEY, RouteTable
from adapter.store.base import ReplyDraft, Store
from adapter.twilio.addresses import is_address, is_service_sid
from adapter.twilio.messages import OutboundMessage

logger = logging.getLogger("adapter.botframework")

MAX_POST_ATTEMPTS = 20
CONNECT_TIMEOUT = 5.0
# The scope of the tokens posted to a jwt bot that names neither scope nor app id.
FALLBACK_SCOPE = "https://api.botframework.com/.default"
ANY_CALLER = "*"


class BotRefusedText(Exception):
    """The bot answered 4xx to a text: posting it again would be refused again."""


class BotUnavailable(Exception):
    """The bot could not take a text within the retry budget; the text is given up on."""


@dataclass(frozen=True)
class RemoteBot:
    router: RemoteBotRouter
    auth: str  # "none" | "jwt"
    secret: str
    service_url: str
    scope: str | None = None  # jwt: the scope of the tokens posted to it
    # jwt: the app ids whose tokens may call the connector as this bot ("*": any).
    allowed_callers: frozenset[str] = frozenset()

    def allows(self, caller: str) -> bool:
        return ANY_CALLER in self.allowed_callers or caller in self.allowed_callers

    @property
    def endpoint(self) -> BotEndpoint:
        return self.router.endpoint

    @property
    def id(self) -> str:
        return self.endpoint.bot_id


class BotFrameworkBridge:
    def __init__(
        self,
        config: BotFrameworkConfig,
        store: Store,
        routes: RouteTable,
        *,
        on_enqueued: Callable[[], None],
    ) -> None:
        self._store = store
        self._routes = routes
        self._on_enqueued = on_enqueued
        self._records = ConversationRecords(store)
        self._bots = _bind_bots(config, routes, self)
        self._by_router = {id(bot.router): bot for bot in self._bots.values()}
        # The sender's backoff, with a budget of posts of its own.
        self._policy = RetryPolicy(max_attempts=MAX_POST_ATTEMPTS, max_age=config.send_max_age)
        # While no token can be had nothing is posted, so no post attempt is spent: the
        # text waits for the token endpoint as long as SMS_ADAPTER_SEND_MAX_AGE allows.
        self._token_policy = RetryPolicy(max_attempts=2**31, max_age=config.send_max_age)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout, connect=CONNECT_TIMEOUT)
        )
        self._timeout = config.timeout
        tokens: TokenSource | None = None
        self._verifier: TokenVerifier | None = None
        if any(bot.auth == "jwt" for bot in self._bots.values()):
            tokens, self._verifier = _jwt_parts(config, self._http)
        self._client = BotClient(self._http, tokens)
        self._log_filter = ReplaceInLogs(
            {bot.secret: "<secret>" for bot in self._bots.values()}
            | {bot.endpoint.url: bot.endpoint.shown for bot in self._bots.values()}
        )
        if self._bots:
            self._log_filter.install()

    @property
    def bots(self) -> tuple[RemoteBot, ...]:
        return tuple(self._bots.values())

    async def aclose(self) -> None:
        self._log_filter.uninstall()
        if self._verifier is not None:
            await self._verifier.aclose()
        await self._http.aclose()

    # --- a text, posted to the bot ------------------------------------------------

    async def run_turn(self, router: RemoteBotRouter, ctx: Context) -> None:
        bot = self._by_router[id(router)]
        message = ctx.message
        person, activity_id = message.from_, ctx.activity.id
        conversation = conversation_id_of(message.to, person)
        previous = await self._records.find_posted(bot.id, conversation, person, activity_id)
        attempts = token_waits = 0
        if previous is not None and previous.activity_id == activity_id:
            if previous.answered:
                logger.info(
                    "%s already answered activity %s; not posted again",
                    bot.endpoint.shown,
                    activity_id,
                )
                return
            attempts, token_waits = previous.attempts, previous.token_waits
        reply_from, reply_service = self._reply_sender(message.to, message.messaging_service_sid)
        record = ConversationRecord(
            conversation=conversation,
            person=person,
            reply_from=reply_from,
            reply_service=reply_service,
            activity_id=activity_id,
            attempts=attempts + 1,
            token_waits=token_waits,
        )
        await self._records.save(bot.id, record)
        await self._records.note_number(bot.id, message.to)

        # The conversation id names our number as well as the person (Microsoft's SMS
        # channel gives the person's number alone): the bot keeps one conversation, and
        # its state, per number the person texts, and its replies are sent from that one.
        activity = replace(
            ctx.activity, service_url=bot.service_url, conversation_id=conversation
        ).to_json()
        outcome = await self._client.post(bot.endpoint.url, activity, bot.auth, bot.scope)
        if isinstance(outcome, Delivered):
            return
        if isinstance(outcome, Refused):
            hint = ""
            if outcome.status in {401, 403}:
                hint = " (check the route's auth mode: none sends no token, jwt sends one)"
            raise BotRefusedText(
                f"{bot.endpoint.shown} refused activity {activity_id} with {outcome.status}"
                f"{hint}: {outcome.detail}"
            )
        latest = await self._records.find(bot.id, conversation)
        if latest is not None and latest.activity_id == activity_id and latest.answered:
            logger.warning(
                "%s answered activity %s, then %s; not posted again, so the answer is not sent twice",
                bot.endpoint.shown,
                activity_id,
                outcome.reason,
            )
            return
        policy, failures = self._policy, record.attempts
        if outcome.no_token:
            # Nothing was posted: give the attempt back, count a wait for the token instead.
            record = replace(record, attempts=attempts, token_waits=token_waits + 1)
            await self._records.save(bot.id, record)
            policy, failures = self._token_policy, record.token_waits
        decision = policy.decide(
            attempts=failures,
            created_at=message.received_at,
            now=datetime.now(UTC),
            retryable=True,
            retry_after=outcome.retry_after,
        )
        if isinstance(decision, GiveUp):
            raise BotUnavailable(
                f"{bot.endpoint.shown}: {outcome.reason}; giving up on activity {activity_id} "
                f"after {failures} attempts: {decision.reason}"
            )
        delay = decision.delay
        if outcome.timed_out:
            # A slow bot may still answer: give it as long again before posting anew
            # (an answer arriving meanwhile cancels the new post).
            delay = max(delay, self._timeout)
        raise RetryLater(
            f"{bot.endpoint.shown}: {outcome.reason} (attempt {failures})", delay=delay
        )

    def _reply_sender(self, to: str, service: str | None) -> tuple[str | None, str | None]:
        route = self._routes.resolve(to, service)
        if route is None:  # the dispatcher found one; a route table does not change
            return to, None
        return route.reply_sender(to)

    # --- the connector's side -----------------------------------------------------

    def bot_for_secret(self, secret: str) -> RemoteBot:
        bot = self._bots.get(secret)
        if bot is None:
            raise unauthorized(
                "this serviceUrl is not one the adapter gave out: post to the serviceUrl of "
                "the latest activity (it changes when the bot's endpoint or "
                "SMS_ADAPTER_BOTFRAMEWORK_SECRET does)"
            )
        return bot

    async def authenticate(self, bot: RemoteBot, authorization: str | None) -> None:
        """Mode none: the secret path was the check. Mode jwt: the bearer token too, and
        that its caller is one this bot allows: a token is good for the connector path of
        the bots that allow its caller only."""
        if bot.auth != "jwt":
            return
        assert self._verifier is not None
        try:
            verified = await self._verifier.verify(authorization)
        except InvalidToken as error:
            raise unauthorized(str(error)) from None
        except KeysUnavailable as error:
            # Logged once per failed fetch where the keys are fetched, not per call.
            raise ConnectorError(503, "ServiceError", str(error), logged=True) from None
        if not bot.allows(verified.caller):
            raise unauthorized(
                f"the token was issued to app {verified.caller!r}, which may not reply as this "
                "bot (its route's allowed_callers, or SMS_ADAPTER_BOTFRAMEWORK_ALLOWED_CALLERS)"
            )

    async def send(
        self,
        bot: RemoteBot,
        conversation_id: str,
        activity: Mapping[str, Any],
        reply_to_id: str | None = None,
    ) -> str:
        """Send one activity from the bot to `conversation_id`; the id it gets."""
        kind = activity.get("type")
        if not isinstance(kind, str) or not kind:
            raise bad_request("the activity has no type", "MissingProperty")
        found = await self._find_conversation(bot, conversation_id)
        if found is None:
            shown = conversation_id if len(conversation_id) <= 80 else conversation_id[:80] + "..."
            raise not_found(
                f"no conversation {shown!r} with this bot: a conversation id is "
                "'<our number>|<person>', as in the conversation.id of the person's texts "
                "or the id POST /v3/conversations answers; a conversation starts when the "
                "person texts us, or with POST /v3/conversations",
                "ConversationNotFound",
            )
        conversation_id, record = found
        if kind != "message":
            # typing, event, trace, endOfConversation...: SMS has nothing to show for them.
            logger.debug("%s activity from %s dropped", kind, bot.endpoint.shown)
            return _dropped_id()
        try:
            rendered = render_message(activity)
        except ValueError as error:
            raise bad_request(f"the activity cannot be read: {error}", "BadSyntax") from None
        if rendered.skipped:
            logger.warning(
                "%s sent attachments SMS cannot carry, left out: %s",
                bot.endpoint.shown,
                ", ".join(rendered.skipped),
            )
        if not rendered.parts:
            if rendered.skipped:
                return _dropped_id()
            raise bad_request("the message has no text and no attachment SMS can carry")
        drafts = [
            ReplyDraft(
                conversation=record.conversation,
                payload=OutboundMessage(
                    to=record.person,
                    body=part.body,
                    from_=record.reply_from,
                    messaging_service_sid=record.reply_service,
                    media_urls=part.media_urls,
                ).to_json(),
            )
            for part in rendered.parts
        ]
        ids = await self._store.enqueue_outbound(drafts)
        self._on_enqueued()
        if reply_to_id is not None:
            # The person has an answer to that text now: a failed post of it must not be
            # retried, or they would get the answer twice.
            await self._records.mark_answered(bot.id, conversation_id, reply_to_id)
        return str(ids[0])

    async def _find_conversation(
        self, bot: RemoteBot, conversation_id: str
    ) -> tuple[str, ConversationRecord] | None:
        """Our record of the conversation the bot names, with the id it is kept under.

        A legacy id (the person's number alone: the ids given out before, which a bot may
        have saved in a conversation reference) names, for a bot routed from one number
        only, that number's conversation with the person; else the record from before,
        which sends from the number the person last texted then."""
        candidates = [conversation_id]
        if is_legacy_id(conversation_id):
            only = self._only_number(bot)
            if only is not None:
                candidates.insert(0, conversation_id_of(only, conversation_id))
        for candidate in candidates:
            record = await self._records.find(bot.id, candidate)
            if record is not None:
                return candidate, record
        return None

    def _only_number(self, bot: RemoteBot) -> str | None:
        """The bot's number, when one number and no other route leads to it."""
        keys = [route.name for route in self._routes.routes if route.router is bot.router]
        return keys[0] if len(keys) == 1 and is_address(keys[0]) else None

    async def create_conversation(
        self, bot: RemoteBot, parameters: Mapping[str, Any]
    ) -> dict[str, Any]:
        """POST /v3/conversations: text a person the bot has not talked to through us."""
        if parameters.get("isGroup"):
            raise bad_request("SMS has no group conversations")
        members = parameters.get("members")
        if (
            not isinstance(members, list)
            or len(members) != 1
            or not isinstance(members[0], Mapping)
            or not isinstance(members[0].get("id"), str)
        ):
            raise bad_request('members must hold exactly one person, as {"id": "+15551234567"}')
        person = members[0]["id"].strip()
        if not is_address(person):
            raise bad_request(f"member {person!r} is not a phone number in E.164 form")
        ours = await self._our_address(bot, parameters.get("bot"))
        reply_from, reply_service = (
            (None, ours) if is_service_sid(ours) else self._reply_sender(ours, None)
        )
        conversation = conversation_id_of(ours, person)
        record = ConversationRecord(
            conversation=conversation,
            person=person,
            reply_from=reply_from,
            reply_service=reply_service,
        )
        existing = await self._records.find(bot.id, conversation)
        if existing is None or (existing.reply_from, existing.reply_service) != (
            reply_from,
            reply_service,
        ):
            await self._records.save(bot.id, record)
        answer: dict[str, Any] = {"id": conversation, "serviceUrl": bot.service_url}
        activity = parameters.get("activity")
        if activity is not None:
            if not isinstance(activity, Mapping):
                raise bad_request("activity must be an object", "BadSyntax")
            answer["activityId"] = await self.send(bot, conversation, activity)
        return answer

    async def _our_address(self, bot: RemoteBot, account: object) -> str:
        """The number (or Messaging Service) a new conversation is texted from: the
        conversation parameters' `bot.id` if it is one of this bot's, else the bot's
        only number. A bot's numbers are the keys routed to it by name and, for a bot on
        the default route (*), the numbers it has been texted at: `*` routes texts to
        the bot, it does not make every number in the world ours."""
        named = [
            route.name
            for route in self._routes.routes
            if route.router is bot.router and route.name != DEFAULT_KEY
        ]
        requested = account.get("id") if isinstance(account, Mapping) else None
        if isinstance(requested, str) and requested.strip():
            requested = requested.strip()
            is_service = is_service_sid(requested)
            route = self._routes.resolve(requested, requested if is_service else None)
            ours = (
                route is not None
                and route.router is bot.router
                and (is_service or is_address(requested))
                and (
                    route.name != DEFAULT_KEY or await self._records.knows_number(bot.id, requested)
                )
            )
            if not ours:
                listed = f" ({', '.join(named)})" if named else ""
                raise bad_request(
                    f"bot.id {requested!r} is not one of this bot's numbers{listed}: a bot "
                    "texts from a number routed to it, or, on the default route (*), from "
                    "a number it has been texted at"
                )
            return requested
        if len(named) == 1:
            return named[0]
        raise bad_request(
            "say which of our numbers texts the person: set bot.id in the conversation "
            "parameters to one of this bot's numbers"
        )


def _bind_bots(
    config: BotFrameworkConfig, routes: RouteTable, bridge: BotFrameworkBridge
) -> dict[str, RemoteBot]:
    """Every Bot Framework bot in the route table, by its connector secret."""
    routers: list[RemoteBotRouter] = []
    for route in routes.routes:
        if isinstance(route.router, RemoteBotRouter) and route.router not in routers:
            routers.append(route.router)
    if not routers:
        return {}
    if not config.public_url:
        raise ConfigError(
            "SMS_ADAPTER_PUBLIC_URL is not set: a Bot Framework bot replies to the adapter "
            "at that URL (its serviceUrl)"
        )
    key = config.secret_key
    if not key:
        raise ConfigError("SMS_ADAPTER_BOTFRAMEWORK_SECRET or TWILIO_AUTH_TOKEN must be set")
    bots: dict[str, RemoteBot] = {}
    for router in routers:
        secret = connector_secret(key, router.endpoint.url)
        if secret in bots:
            raise ConfigError(
                f"{router.endpoint.shown} is configured twice with different settings: "
                "give each Bot Framework bot one route block, or the same auth everywhere"
            )
        auth = router.endpoint.auth or config.default_auth
        scope, callers = _jwt_identity(config, router.endpoint) if auth == "jwt" else (None, ())
        bots[secret] = RemoteBot(
            router,
            auth,
            secret,
            service_url(config.public_url, secret),
            scope=scope,
            allowed_callers=frozenset(callers),
        )
        router.bind(bridge)
    return bots


def _jwt_identity(config: BotFrameworkConfig, endpoint: BotEndpoint) -> tuple[str, tuple[str, ...]]:
    """A jwt bot's token scope and allowed callers: its route's, else the settings', else
    derived from its app id (as Azure Bot Service does: tokens for `<app id>/.default`,
    replies from the bot's own app id)."""
    app_id = endpoint.app_id or config.bot_app_id
    if endpoint.scope or endpoint.app_id:
        scope = endpoint.scope or f"{endpoint.app_id}/.default"
    else:
        scope = config.scope or (f"{app_id}/.default" if app_id else FALLBACK_SCOPE)
    callers = endpoint.allowed_callers or config.allowed_callers or ((app_id,) if app_id else ())
    if not callers:
        raise ConfigError(
            f"{endpoint.shown} uses auth jwt but allows no caller to reply as it: give its "
            "route bot_app_id (or allowed_callers), or set SMS_ADAPTER_BOTFRAMEWORK_BOT_APP_ID "
            "or SMS_ADAPTER_BOTFRAMEWORK_ALLOWED_CALLERS"
        )
    return scope, callers


def _jwt_parts(
    config: BotFrameworkConfig, http: httpx.AsyncClient
) -> tuple[TokenSource, TokenVerifier]:
    if not crypto_available():
        raise ConfigError(
            "Bot Framework auth jwt needs the cryptography package: "
            "pip install 'sms-adapter[botframework-jwt]'"
        )
    required = {
        "SMS_ADAPTER_BOTFRAMEWORK_APP_ID": config.app_id,
        "SMS_ADAPTER_BOTFRAMEWORK_APP_PASSWORD": config.app_password,
        "SMS_ADAPTER_BOTFRAMEWORK_TOKEN_URL": config.token_url,
        "SMS_ADAPTER_BOTFRAMEWORK_OPENID_METADATA": config.openid_metadata,
    }
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise ConfigError(f"Bot Framework auth jwt needs {', '.join(missing)}")
    assert config.app_id and config.app_password
    assert config.token_url and config.openid_metadata
    tokens = TokenSource(
        http,
        token_url=config.token_url,
        client_id=config.app_id,
        client_secret=config.app_password,
    )
    verifier = TokenVerifier(
        http,
        config.openid_metadata,
        audience=config.audience or config.app_id,
        issuers=list(config.issuers),
    )
    return tokens, verifier


def _dropped_id() -> str:
    # The SDK wants an id back even for what the channel drops.
    return f"dropped-{uuid.uuid4().hex}"
