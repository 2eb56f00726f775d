"""Test a bot as a conversation, with no server, database or Twilio account:

    from adapter.testing import BotConversation

    def test_help() -> None:
        chat = BotConversation("bots.echo:router")
        chat.expect("hello", "You said: hello")
        assert chat.say("help") == ["Text me anything and I'll echo it."]

Each text takes the path a real one takes after the network, on the in-memory store: a
form like Twilio's webhook, parsed by the webhook's own parser, added to the store,
claimed and handled by the adapter's own `Dispatcher` (opt-out keywords, time limit,
error handlers, the state saved as JSON with the turn), its replies committed to the
outbox and read back from it. Status updates go through the adapter's `StatusRecorder`
to the bot's status handlers, STOP and START through its `OptOuts`, and
`ctx.download()` through its media downloader, answered from the files the test serves
(`serve_media`). `ctx.history()` answers from the conversation so far (`transcript`).

A handler that raises (or runs past its time limit) fails the test with its error,
unless the bot's error handler (or `error_reply=`) answered: then `say` returns that
answer and `errors` holds the error. Startup hooks run before the first text; shutdown
hooks at `close()` (or the end of a `with` / `async with` block, or of the
`bot_conversation` pytest fixture's test).

In `async def` tests use `await chat.send(...)` (and `await chat.send_status(...)`);
`say`, `expect` and `status` are for plain ones.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from adapter.bot.context import jsonable_state
from adapter.bot.history import HistoryMessage
from adapter.bot.router import Router
from adapter.delivery.dispatcher import Dispatcher
from adapter.delivery.events import ChannelEvents
from adapter.delivery.lifecycle import BotLifecycle
from adapter.delivery.media_download import MediaDownloader
from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.routes import DEFAULT_KEY, Route, RouteTable
from adapter.delivery.statuses import StatusRecorder
from adapter.devtools.emulator.inbound import inbound_webhook_form
from adapter.devtools.emulator.state import INBOUND, StoredMessage, media_at, new_sid
from adapter.long_messages import LongMessages
from adapter.runtime.bot_routes import load_bot
from adapter.segments import count_segments
from adapter.store.memory import MemoryStore
from adapter.twilio.client import Credentials
from adapter.twilio.limits import MAX_MEDIA
from adapter.twilio.messages import InboundMessage, OutboundMessage
from adapter.twilio.webhook_form import parse_inbound

T = TypeVar("T")
ACCOUNT_SID = "AC" + "0" * 32
TWILIO_API = "https://api.twilio.com"
# Texts are handled as they are sent, so no lease runs out; a long one all the same.
_LEASE_SECONDS = 3600.0


class _Heard(ChannelEvents):
    """What the channel reports that a test needs: the bots' errors."""

    def __init__(self) -> None:
        self.errors: list[tuple[BaseException, bool]] = []
        self.no_handler = False

    def bot_had_no_handler(self, bot: str) -> None:
        self.no_handler = True

    def bot_error(self, bot: str, kind: str, error: BaseException, *, answered: bool) -> None:
        self.errors.append((error, answered))


class BotConversation:
    """One person texting one bot; see the module docstring."""

    def __init__(
        self,
        bot: Router | str,
        *,
        person: str = "+15551230000",
        ours: str = "+15005550006",
        opt_out_to_bots: bool = False,
        handler_timeout: float | None = 60.0,
        error_reply: str | None = None,
        long_messages: LongMessages = LongMessages.SPLIT,
    ) -> None:
        """`opt_out_to_bots`, `handler_timeout`, `error_reply` and `long_messages` are
        the settings SMS_ADAPTER_OPT_OUT_TO_BOTS, _HANDLER_TIMEOUT, _BOT_ERROR_REPLY and
        _LONG_MESSAGES, with the adapter's defaults."""
        self.router = bot if isinstance(bot, Router) else load_bot(bot)
        self.bot_name = bot if isinstance(bot, str) else (bot.name or "bot")
        self.person = person
        self.ours = ours
        self.store = MemoryStore()
        self.replies: list[OutboundMessage] = []  # every reply so far, oldest first
        self.reply_sids: list[str] = []  # the MessageSid each reply was sent as
        self.handled = False  # whether a handler matched the last text
        self.errors: list[BaseException] = []  # what handlers raised that an error handler answered
        self.opted_out = False  # whether the person opted out (STOP) of texts from `ours`
        # What `ctx.history()` answers: every text and reply so far.
        self.transcript: list[HistoryMessage] = []
        self._state: dict[str, Any] = {}
        self._media: dict[str, tuple[bytes, str]] = {}
        self._heard = _Heard()
        routes = RouteTable([Route(DEFAULT_KEY, self.router, self.bot_name)])
        opt_outs = OptOuts(self.store)
        self._opt_outs = opt_outs
        self._http = httpx.AsyncClient(transport=httpx.MockTransport(self._serve_media))
        downloader = MediaDownloader(
            Credentials(ACCOUNT_SID, ACCOUNT_SID, "test-token"), TWILIO_API, http=self._http
        )
        self._dispatcher = Dispatcher(
            self.store,
            routes,
            concurrency=1,
            on_replies_committed=lambda: None,
            opt_outs=opt_outs,
            events=self._heard,
            history=lambda message: self._history,
            long_messages=long_messages,
            opt_out_to_bots=opt_out_to_bots,
            media_download=downloader.download,
            handler_timeout=handler_timeout,
            error_reply=error_reply,
            lease_seconds=_LEASE_SECONDS,
        )
        self._statuses = StatusRecorder(self.store, routes, opt_outs, events=self._heard)
        self._lifecycle = BotLifecycle(routes)
        self._started = False
        self._runner: asyncio.Runner | None = None  # the event loop of say() and status()

    # --- the conversation's state -----------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """The conversation's state as last saved (change it to set what the bot sees)."""
        return self._state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._state = value

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Run the bot's startup hooks (the first `send` does it if the test did not)."""
        if self._started:
            return
        await self.store.open()
        try:
            await self._lifecycle.start()
        except BaseException:
            await self.store.close()
            raise
        self._started = True

    async def stop(self) -> None:
        """Run the bot's shutdown hooks."""
        if not self._started:
            return
        self._started = False
        await self._lifecycle.stop()
        await self._statuses.aclose()
        await self.store.close()

    def close(self) -> None:
        """`stop` for plain tests; also ends the event loop `say` runs on."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.run(self.stop())
            runner.close()
        elif self._started:
            asyncio.run(self.stop())

    def __enter__(self) -> BotConversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> BotConversation:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- texts ------------------------------------------------------------------

    async def send(self, text: str, *, media: Sequence[str] = ()) -> list[str]:
        """Text the bot; return the bodies of its replies to this text."""
        message = inbound_message(text, person=self.person, ours=self.ours, media=media)
        await self.start()
        conversation = str(message.conversation)
        await self.store.save_state(conversation, jsonable_state(self._state))
        self.transcript.append(
            HistoryMessage(
                sid=message.message_sid,
                direction="inbound",
                from_=self.person,
                to=self.ours,
                body=text,
                status="received",
                at=message.received_at,
                num_media=len(media),
            )
        )
        await self.store.add_inbound(
            message.message_sid, conversation, message.to_json(), message.received_at
        )
        [job] = await self.store.claim_inbound(1, _LEASE_SECONDS)
        self._heard.errors.clear()
        self._heard.no_handler = False
        await self._dispatcher.handle(job)

        self._state = await self.store.load_state(conversation)
        self.opted_out = await self._opt_outs.is_opted_out(self.person, self.ours)
        self.handled = not self._heard.no_handler
        replies = await self._read_outbox()
        self._raise_unanswered()
        return [reply.body for reply in replies]

    def say(self, text: str, *, media: Sequence[str] = ()) -> list[str]:
        """`send` for tests that are plain functions."""
        return self._run_sync(self.send(text, media=media))

    def expect(self, text: str, *replies: str) -> None:
        """Text the bot and assert it answers exactly `replies`, in order."""
        actual = self.say(text)
        if actual != list(replies):
            raise AssertionError(
                f"after the text {text!r} the bot replied:\n{_listed(actual, self.handled)}\n"
                f"but the test expected:\n{_listed(list(replies), True)}"
            )

    # --- what happens to the replies ---------------------------------------------

    async def send_status(
        self, status: str, *, error_code: int | None = None, reply: int = -1
    ) -> None:
        """Twilio reports `status` ("delivered", "failed"...) for one of the bot's replies
        (the latest by default; `reply` indexes `replies`): the bot's status handlers run,
        as on a status callback. Error 21610 opts the person out, as Twilio's does."""
        if not self.replies:
            raise LookupError("the bot has not replied yet: there is no status to report")
        sid = self.reply_sids[reply]
        await self.start()
        self._heard.errors.clear()
        await self._statuses.apply(sid, status, error_code)
        self.opted_out = await self._opt_outs.is_opted_out(self.person, self.ours)
        record = await self.store.find_outbound_by_sid(sid)
        if record is not None:
            self.transcript = [
                replace(m, status=record.twilio_status, error_code=record.error_code)
                if m.sid == sid
                else m
                for m in self.transcript
            ]
        self._raise_unanswered()

    def status(self, status: str, *, error_code: int | None = None, reply: int = -1) -> None:
        """`send_status` for tests that are plain functions."""
        self._run_sync(self.send_status(status, error_code=error_code, reply=reply))

    def serve_media(self, url: str, content: bytes, content_type: str = "image/jpeg") -> None:
        """Answer `ctx.download(url)` with `content`; other URLs answer 404, and URLs off
        Twilio's media hosts are refused, as in the adapter."""
        self._media[url] = (content, content_type)

    # --- inside ---------------------------------------------------------------------

    async def _history(self, limit: int) -> list[HistoryMessage]:
        # As in the adapter: the latest messages, oldest first, this text included.
        return self.transcript[-limit:]

    async def _read_outbox(self) -> list[OutboundMessage]:
        """Take the committed replies out of the outbox, as the sender would, and mark
        them sent with a MessageSid of their own (for status updates)."""
        replies: list[OutboundMessage] = []
        while jobs := await self.store.claim_outbound(1, _LEASE_SECONDS, datetime.now(UTC)):
            for job in jobs:
                reply = OutboundMessage.from_json(job.payload)
                sid = new_sid(bool(reply.media_urls))
                await self.store.mark_sent(job.id, sid, "sent")
                replies.append(reply)
                self.replies.append(reply)
                self.reply_sids.append(sid)
                self.transcript.append(
                    HistoryMessage(
                        sid=sid,
                        direction="outbound",
                        from_=reply.from_ or self.ours,
                        to=reply.to,
                        body=reply.body,
                        status="sent",
                        at=datetime.now(UTC),
                        num_media=len(reply.media_urls),
                        num_segments=count_segments(reply.body),
                    )
                )
        return replies

    def _raise_unanswered(self) -> None:
        heard, self._heard.errors = self._heard.errors, []
        self.errors += [error for error, answered in heard if answered]
        for error, answered in heard:
            if not answered:
                raise error

    def _serve_media(self, request: httpx.Request) -> httpx.Response:
        found = self._media.get(str(request.url))
        if found is None:
            return httpx.Response(404, json={"code": 20404, "message": "not found"})
        content, content_type = found
        return httpx.Response(200, content=content, headers={"Content-Type": content_type})

    def _run_sync(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            work.close()
            raise RuntimeError(
                "say(), expect() and status() are for plain test functions; "
                "await send() here (or send_status())"
            )
        if self._runner is None:
            # One loop for the whole conversation: what a startup hook opens (an HTTP
            # client) belongs to the loop the handlers then run on.
            self._runner = asyncio.Runner()
            # A test that never calls close(): the loop is closed when the conversation
            # is collected (without Runner.close, which would run it inside another).
            weakref.finalize(self, self._runner.get_loop().close)
        return self._runner.run(work)


def inbound_message(
    text: str,
    *,
    person: str = "+15551230000",
    ours: str = "+15005550006",
    media: Sequence[str] = (),
) -> InboundMessage:
    """The message the webhook would make of a text from `person` to `ours`, with the
    form Twilio posts (for testing one handler or filter: `Context(message=..., ...)`).

    The form is the one the Twilio emulator posts, so both stay as Twilio's."""
    if isinstance(media, str) or len(media) > MAX_MEDIA:
        raise ValueError(f"media= takes a list of at most {MAX_MEDIA} URLs")
    now = datetime.now(UTC)
    text_as_received = StoredMessage(
        sid=new_sid(bool(media)),
        seq=0,
        direction=INBOUND,
        from_=person,
        to=ours,
        body=text,
        status="received",
        num_segments=count_segments(text),
        date_created=now,
        date_updated=now,
        media=tuple(media_at(url) for url in media),
    )
    form = inbound_webhook_form(text_as_received, ACCOUNT_SID)
    return parse_inbound(list(form.items()))


def _listed(replies: list[str], handled: bool) -> str:
    if not replies:
        return "  (nothing)" if handled else "  (nothing: no handler matched)"
    return "\n".join(f"  {reply!r}" for reply in replies)
