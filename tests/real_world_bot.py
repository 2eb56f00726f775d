"""The bot tests/test_real_world_e2e.py talks to: it downloads pictures and answers with
one, sends a reply too long for one message, greets WhatsApp users by profile name, and
notes the replies refused because the person opted out."""

from __future__ import annotations

from adapter import Context, Router
from adapter.bot.context import RecipientOptedOut
from adapter.bot.filters import HasMedia, Keyword

router = Router("real-world")

REPLY_PICTURE = "https://example.com/reply.png"
# 3,500 characters of numbered words: Twilio takes 1,600 per message.
LONG_REPLY = " ".join(f"word{i:04d}" for i in range(389))[:3500].rstrip()
refused: list[str] = []  # texts whose reply was refused: the person had opted out


@router.message(HasMedia())
async def picture(ctx: Context) -> None:
    media = await ctx.download(ctx.activity.attachments[0], max_bytes=100_000)
    await ctx.reply(f"got {media.size} bytes of {media.content_type}", media=[REPLY_PICTURE])


@router.message(Keyword("LONG"))
async def long_reply(ctx: Context) -> None:
    await ctx.reply(LONG_REPLY)


@router.message(Keyword("WHO"))
async def who(ctx: Context) -> None:
    await ctx.reply(f"hello {ctx.activity.from_.name}")


@router.message()
async def heard(ctx: Context) -> None:
    try:
        await ctx.reply(f"heard: {ctx.text}")
    except RecipientOptedOut:
        refused.append(ctx.text)
