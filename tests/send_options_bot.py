"""A bot for tests: one keyword per Send Message option."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapter import Context, Keyword, Router

router = Router()
TEMPLATE = "HX" + "7" * 32
REMINDER_AHEAD = timedelta(hours=1)


@router.message(Keyword("CODE"))
async def code(ctx: Context) -> None:
    await ctx.reply("Your code is 123456", validity_period=timedelta(minutes=10), max_price="0.05")


@router.message(Keyword("QUOTES"))
async def quotes(ctx: Context) -> None:
    await ctx.reply("\u201cSmart\u201d quotes \u2013 and more\u2026", smart_encoded=True)


@router.message(Keyword("LINK"))
async def link(ctx: Context) -> None:
    await ctx.reply("Track it: https://example.com/track/1042", shorten_urls=True)


@router.message(Keyword("MMS"))
async def mms(ctx: Context) -> None:
    await ctx.reply("A long text as one MMS", send_as_mms=True)


@router.message(Keyword("REMIND"))
async def remind(ctx: Context) -> None:
    send_at = datetime.now(UTC) + REMINDER_AHEAD
    await ctx.reply("Reminder: your appointment is in an hour", send_at=send_at)


@router.message(Keyword("TEMPLATE"))
async def template(ctx: Context) -> None:
    await ctx.reply("", content_sid=TEMPLATE, content_variables={"1": "Ana"})


@router.message()
async def echo(ctx: Context) -> None:
    await ctx.reply(f"You said: {ctx.text}")
