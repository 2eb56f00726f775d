"""A text catch-up found too old reaches only bots that ask for late texts (ctx.late)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapter.bot.context import Context
from adapter.bot.router import Router
from adapter.delivery.dispatcher import TOO_OLD, Dispatcher
from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.routes import Route, RouteTable
from adapter.store.memory import MemoryStore
from adapter.twilio.messages import InboundMessage

OURS, PERSON = "+15005550006", "+15551112222"


def bot(late_texts: bool) -> Router:
    router = Router("late", late_texts=late_texts)

    @router.message()
    async def answer(ctx: Context) -> None:
        await ctx.reply("sorry for the delay" if ctx.late else "hi")

    return router


@pytest.mark.parametrize(
    ("late_texts", "late", "replies", "error"),
    [
        (False, True, [], TOO_OLD),
        (True, True, ["sorry for the delay"], None),
        (False, False, ["hi"], None),
    ],
)
async def test_a_late_text_reaches_only_bots_that_take_late_texts(
    late_texts: bool, late: bool, replies: list[str], error: str | None
) -> None:
    store = MemoryStore()
    await store.open()
    dispatcher = Dispatcher(
        store,
        RouteTable([Route("*", bot(late_texts), "late")]),
        concurrency=1,
        on_replies_committed=lambda: None,
        opt_outs=OptOuts(store),
    )
    message = InboundMessage(
        message_sid="SM" + "1" * 32,
        account_sid="AC" + "1" * 32,
        from_=PERSON,
        to=OURS,
        body="are you there?",
        received_at=datetime.now(UTC) - timedelta(hours=3),
        caught_up=True,
        late=late,
    )
    conversation = str(message.conversation)
    await store.add_inbound(
        message.message_sid, conversation, message.to_json(), message.received_at
    )
    [job] = await store.claim_inbound(1, 60)

    await dispatcher.handle(job)

    outbox = await store.list_outbound()
    assert [row.payload["body"] for row in outbox] == replies
    assert await store.pending_inbound_count() == 0
    # The store contract has no read of a done text; the memory store's row is plain.
    assert store._inbound[job.id].error == error
