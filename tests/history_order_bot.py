"""An echo bot that also notes what `ctx.history()` showed it, for the history order test."""

from adapter import Context, Router

router = Router("history-order")
seen: list[list[str]] = []  # the bodies ctx.history() returned, one list per text


@router.message()
async def echo(ctx: Context) -> None:
    seen.append([message.body for message in await ctx.history(20)])
    await ctx.reply(f"You said: {ctx.text}")
