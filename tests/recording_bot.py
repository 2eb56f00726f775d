"""A bot for tests: records every activity it is given and replies with a fixed text."""

from __future__ import annotations

from adapter import Context, Router

router = Router()
seen: list[str] = []


@router.message()
async def record(ctx: Context) -> None:
    seen.append(ctx.activity.id)
    await ctx.reply(f"got {ctx.text}")
