"""What a bot handler receives for one text: the text, the conversation's state, reply().

Nothing here sends anything. `reply()` checks the reply and buffers it in `replies`; the
dispatcher commits the buffered replies and `state` together with the turn, so a bot
that raises half-way sends nothing. This module knows nothing of HTTP, Twilio or the store.

Reply errors, all raised by `reply()` before anything is buffered:

    ReplyError (ValueError)
     ├── EmptyReply         neither text nor media
     ├── ReplyTooLong       more text than one message can carry, with long messages refused
     ├── TooManyMedia       more media URLs than one message can carry
     ├── InvalidMediaUrl    a media URL Twilio could not fetch
     ├── InvalidReplyOption a send option Twilio would refuse (validity_period, send_at...);
     │                      `.argument` names it
     └── RecipientOptedOut  the person texted STOP to this sender (until they text START)

A reply longer than one message follows `SMS_ADAPTER_LONG_MESSAGES` (see
`adapter.long_messages`): split into several messages (the default), truncated, or refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from adapter.activity import Activity, Attachment
from adapter.bot.history import HistoryMessage
from adapter.long_messages import LongMessages, split_body, truncate_body
from adapter.segments import count_segments
from adapter.twilio.limits import MAX_BODY_CHARS, MAX_MEDIA
from adapter.twilio.messages import InboundMessage, Media, OutboundMessage
from adapter.twilio.send_options import InvalidSendOption, SendOptions
from adapter.twilio.smart_encoding import smart_encode

if TYPE_CHECKING:
    from adapter.bot.media import MediaFile

# Twilio's limits for one outgoing message.

HistoryProvider = Callable[[int], Awaitable[list[HistoryMessage]]]
# (url, content type if known, max_bytes or None for the default) -> the file.
MediaDownload = Callable[[str, str | None, int | None], Awaitable["MediaFile"]]


class ReplyError(ValueError):
    """`ctx.reply()` was asked for a message that cannot be sent; the message says why."""


class EmptyReply(ReplyError):
    pass


class ReplyTooLong(ReplyError):
    pass


class TooManyMedia(ReplyError):
    pass


class InvalidMediaUrl(ReplyError):
    pass


class InvalidReplyOption(ReplyError):
    """A send option of `ctx.reply()` Twilio would refuse; `argument` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


class RecipientOptedOut(ReplyError):
    """The person opted out of texts from this sender (`ctx.opted_out` says so first)."""

    def __init__(self, person: str, sender: str) -> None:
        super().__init__(
            f"{person} opted out of texts from {sender} (they texted STOP): nothing is "
            "sent to them from it until they text START"
        )
        self.person = person
        self.sender = sender


class HandlerTimeout(TimeoutError):
    """A handler ran past its time limit (`SMS_ADAPTER_HANDLER_TIMEOUT`); its error
    handler receives this."""

    def __init__(self, handler: str, seconds: float) -> None:
        super().__init__(f"{handler} ran past its time limit of {seconds:g}s and was stopped")
        self.handler = handler
        self.seconds = seconds


class NoMatch(LookupError):
    """`ctx.match` was read in a handler that no Regex filter chose."""


class TurnOver(RuntimeError):
    """`ctx.reply()` after the turn ended: the handler ran past its time limit (or was
    cancelled) and goes on in the background; what it replies now is discarded."""


class StateNotSerializable(TypeError):
    """`ctx.state` holds something JSON cannot store; the message names where it is."""


class RetryLater(Exception):
    """Raised by a handler that cannot handle the text now (a service it needs is down):
    the text is handled again after `delay` seconds, and the conversation's later texts
    wait for it. This turn's replies and state changes are dropped."""

    def __init__(self, reason: str, *, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


class Context:
    """One turn of a conversation, as a handler sees it.

    Replies come from `reply_from` or, when the route sends through a Messaging Service,
    from `reply_messaging_service_sid`; with neither, from the number the person texted.
    """

    def __init__(
        self,
        *,
        message: InboundMessage,
        bot_name: str,
        state: dict[str, Any] | None = None,
        reply_from: str | None = None,
        reply_messaging_service_sid: str | None = None,
        activity: Activity | None = None,
        history_provider: HistoryProvider | None = None,
        opted_out: bool = False,
        long_messages: LongMessages = LongMessages.SPLIT,
        media_download: MediaDownload | None = None,
        send_defaults: SendOptions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if reply_from is not None and reply_messaging_service_sid is not None:
            raise ValueError("give reply_from or reply_messaging_service_sid, not both")
        self.message = message
        self.activity = activity if activity is not None else Activity.from_inbound(message)
        self.bot_name = bot_name
        self.state: dict[str, Any] = state if state is not None else {}
        self._match: re.Match[str] | None = None
        self.replies: list[OutboundMessage] = []
        self._reply_service = reply_messaging_service_sid
        self._reply_from = None if reply_messaging_service_sid else (reply_from or message.to)
        self._history_provider = history_provider
        # Whether the person opted out of texts from the sender replies come from.
        self.opted_out = opted_out
        self._long_messages = LongMessages(long_messages)
        self._media_download = media_download
        self._over = False
        # The route's [routes.send] options, under what each reply asks for.
        self._send_defaults = send_defaults or SendOptions()
        self._clock = clock

    @property
    def text(self) -> str:
        return self.activity.text

    @property
    def late(self) -> bool:
        """True for a text whose webhook never came and that inbound catch-up found older
        than SMS_ADAPTER_CATCHUP_MAX_AGE; only routers made with `late_texts=True` see
        such texts. `ctx.message.received_at` says when Twilio received it."""
        return self.message.late

    @property
    def match(self) -> re.Match[str]:
        """The match of the Regex filter that chose this handler (`ctx.match[1]` is its
        first group). Raises NoMatch in a handler no Regex chose, or when the Regex was
        one side of an `|` that matched on its other side."""
        if self._match is None:
            raise NoMatch(
                "ctx.match is set only in a handler chosen by a Regex filter, and this "
                "text matched none (check `ctx.has_match` where a Regex is one of several)"
            )
        return self._match

    @property
    def has_match(self) -> bool:
        """Whether a Regex filter matched this text (so `ctx.match` can be read)."""
        return self._match is not None

    def set_match(self, match: re.Match[str] | None) -> None:
        """Set by the router for the handler it chose."""
        self._match = match

    def end_turn(self) -> None:
        """The turn is over (its handler timed out or was cancelled): later replies raise
        TurnOver, so a handler abandoned in its thread cannot add to what was sent."""
        self._over = True

    def reply(
        self,
        text: str,
        *,
        media: Sequence[str] = (),
        validity_period: int | timedelta | None = None,
        max_price: str | Decimal | None = None,
        smart_encoded: bool | None = None,
        shorten_urls: bool | None = None,
        send_as_mms: bool | None = None,
        send_at: datetime | None = None,
        content_sid: str | None = None,
        content_variables: Mapping[str, Any] | None = None,
    ) -> Awaitable[None]:
        """Queue a reply to the person; it is sent after the handler returns.

        The keyword options are Twilio's Send Message options (see
        `adapter.twilio.send_options`); unset ones take the route's defaults. Each is
        checked here, so a bad one raises `InvalidReplyOption` before anything is queued.

        `await ctx.reply(...)` in an `async def` handler; in a plain `def` handler (run in
        a worker thread) call `ctx.reply(...)` without await: the reply is queued (or the
        ReplyError raised) at the call either way.
        """
        self._queue_reply(
            text,
            media,
            validity_period=validity_period,
            max_price=max_price,
            smart_encoded=smart_encoded,
            shorten_urls=shorten_urls,
            send_as_mms=send_as_mms,
            send_at=send_at,
            content_sid=content_sid,
            content_variables=content_variables,
        )
        return _DONE

    def _queue_reply(self, text: str, media: Sequence[str], **given: Any) -> None:
        if self._over:
            raise TurnOver(
                "ctx.reply() after the turn ended (the handler ran past its time limit): "
                "the reply is discarded"
            )
        if not isinstance(text, str):
            raise TypeError(f"ctx.reply() takes the text as a str, got {type(text).__name__}")
        media_urls = _checked_media(media)
        options = self._options(**given)
        if not text.strip() and not media_urls and options.content_sid is None:
            raise EmptyReply(
                "ctx.reply() needs some text or a media URL (or a content_sid); all are empty"
            )
        if self.opted_out:
            raise RecipientOptedOut(
                self.message.from_, self._reply_from or self._reply_service or self.message.to
            )
        # A long text becomes several messages; media and a template ride with the first,
        # the other options (validity, schedule...) apply to every part.
        later_parts = replace(options, content_sid=None, content_variables=None)
        for index, body in enumerate(self._bodies(text)):
            self.replies.append(
                OutboundMessage(
                    to=self.message.from_,
                    body=body,
                    from_=self._reply_from,
                    messaging_service_sid=self._reply_service,
                    media_urls=media_urls if index == 0 else (),
                    options=options if index == 0 else later_parts,
                )
            )

    def _options(self, **given: Any) -> SendOptions:
        return checked_send_options(
            "ctx.reply()",
            given,
            defaults=self._send_defaults,
            messaging_service_sid=self._reply_service,
            now=self._clock(),
        )

    def segments(self, text: str, *, smart_encoded: bool | None = None) -> int:
        """The SMS segments `ctx.reply(text)` would be billed as, all its parts together;
        with smart encoding (given, or the route's default) as Twilio would apply it."""
        try:
            bodies = self._bodies(text)
        except ReplyTooLong:
            bodies = [text]
        if smart_encoded is None:
            smart_encoded = bool(self._send_defaults.smart_encoded)
        if smart_encoded:
            bodies = [smart_encode(body) for body in bodies]
        return sum(count_segments(body) for body in bodies)

    def _bodies(self, text: str) -> list[str]:
        if len(text) <= MAX_BODY_CHARS:
            return [text]
        if self._long_messages is LongMessages.SPLIT:
            return split_body(text)
        if self._long_messages is LongMessages.TRUNCATE:
            return [truncate_body(text)]
        raise ReplyTooLong(
            f"a reply holds at most {MAX_BODY_CHARS} characters and this one has {len(text)}, "
            "and SMS_ADAPTER_LONG_MESSAGES is refuse: shorten it, split it into several "
            "ctx.reply() calls, or set it to split"
        )

    async def download(
        self, media: Attachment | Media | str, *, max_bytes: int | None = None
    ) -> MediaFile:
        """Download one of the text's media (an attachment, or its URL) with the account's
        credentials, which go to Twilio only. Raises `adapter.bot.media.MediaDownloadError`."""
        if self._media_download is None:
            raise NotImplementedError(
                "ctx.download() is unavailable: no media downloader is configured"
            )
        if isinstance(media, Attachment):
            url, content_type = media.content_url, media.content_type
        elif isinstance(media, Media):
            url, content_type = media.url, media.content_type
        else:
            url, content_type = media, None
        return await self._media_download(url, content_type, max_bytes)

    async def history(self, limit: int = 20) -> list[HistoryMessage]:
        """The conversation's latest messages, newest last, from the history service."""
        if self._history_provider is None:
            raise NotImplementedError(
                "ctx.history() is unavailable: the conversation history service is not configured"
            )
        if limit < 1:
            raise ValueError(f"ctx.history(limit=...) must be at least 1, got {limit}")
        return await self._history_provider(limit)


class _Done:
    """What `ctx.reply()` returns: already done, awaitable for async handlers, and
    harmless when a sync handler drops it (unlike a coroutine never awaited)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_DONE = _Done()


def checked_send_options(
    caller: str,
    given: Mapping[str, Any],
    *,
    messaging_service_sid: str | None,
    now: datetime,
    defaults: SendOptions | None = None,
) -> SendOptions:
    """The send options given to `caller` (`ctx.reply()`, `send_text()`), over `defaults`,
    checked for the sender and the moment: a bad one raises InvalidReplyOption naming it,
    so replies and proactive texts refuse options the same way."""
    try:
        options = SendOptions.of(**given)
        if defaults is not None:
            options = options.merged_over(defaults)
        options.check_sender(messaging_service_sid=messaging_service_sid, now=now)
    except InvalidSendOption as error:
        raise InvalidReplyOption(error.argument, f"{caller} {error}") from None
    return options


def _checked_media(media: Sequence[str]) -> tuple[str, ...]:
    if isinstance(media, str):
        raise InvalidMediaUrl("media= takes a list of URLs, not one string: write media=[url]")
    urls = tuple(media)
    if len(urls) > MAX_MEDIA:
        raise TooManyMedia(
            f"a reply carries at most {MAX_MEDIA} media URLs and this one has {len(urls)}: "
            "send the rest in another ctx.reply()"
        )
    for url in urls:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
            raise InvalidMediaUrl(
                f"media URL {url!r} is not an absolute http(s) URL: Twilio fetches each "
                "media file itself, so give a full address like https://example.com/cat.jpg"
            )
    return urls


_JSON_SCALARS = (str, int, float, bool, type(None))


def jsonable_state(state: dict[str, Any]) -> dict[str, Any]:
    """`state` as it will be after it is saved and loaded again (a JSON round trip).

    Raises StateNotSerializable naming the first value JSON cannot hold, so the bot's
    author learns which key to fix rather than reading a bare json error.
    """
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise StateNotSerializable(f"ctx.state must stay a dict, but it was set to a {kind}")
    try:
        restored: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    except (TypeError, ValueError) as error:
        where = _first_unserializable(state, "ctx.state")
        if where is None:
            raise StateNotSerializable(f"ctx.state cannot be saved as JSON: {error}") from None
        path, what = where
        raise StateNotSerializable(
            f"{path} is {what}, which cannot be saved between texts: "
            "ctx.state holds only str, int, float, bool, None, lists and dicts with str keys"
        ) from None
    return restored


def _first_unserializable(
    value: object, path: str, containing: frozenset[int] = frozenset()
) -> tuple[str, str] | None:
    """Where and why json.dumps gives up: ("ctx.state['cart'][2]", "a datetime"), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, f"the float {value!r}"
    if isinstance(value, _JSON_SCALARS):
        return None
    if not isinstance(value, dict | list | tuple):
        return path, f"a {type(value).__name__}"
    if id(value) in containing:
        return path, f"a {type(value).__name__} that contains itself"
    inside = containing | {id(value)}
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if not isinstance(key, _JSON_SCALARS):
            return f"{path} key {key!r}", f"a {type(key).__name__}"
        found = _first_unserializable(item, f"{path}[{key!r}]", inside)
        if found is not None:
            return found
    return None
