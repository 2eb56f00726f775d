"""StatusRecorder: what the bots' status handlers hear."""

from __future__ import annotations

from adapter.bot.router import Router, StatusUpdate
from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.routes import Route, RouteTable
from adapter.delivery.statuses import StatusRecorder
from adapter.store.memory import MemoryStore
from adapter.twilio.messages import OutboundMessage
from adapter.twilio.send_options import SendOptions

OURS = "+15005550006"
PERSON = "+15551234567"


async def test_a_reply_given_up_unsent_reaches_the_bots_failed_handlers() -> None:
    router = Router()
    heard: list[StatusUpdate] = []

    @router.status("failed")
    async def failed(update: StatusUpdate) -> None:
        heard.append(update)

    store = MemoryStore()
    await store.open()
    recorder = StatusRecorder(store, RouteTable([Route("*", router, "bot")]), OptOuts(store))
    message = OutboundMessage(
        to=PERSON, body="Your code is 1", from_=OURS, options=SendOptions(validity_period=60)
    )
    await recorder.unsent(str(message.conversation), message, "its validity period passed")
    await recorder.aclose()

    [update] = heard
    assert (update.message_sid, update.status, update.body) == (None, "failed", "Your code is 1")
    assert (update.to, update.reason) == (PERSON, "its validity period passed")
