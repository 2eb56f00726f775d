"""A bot for shutdown tests: while `hold` is set, a turn waits until it is cancelled."""

from __future__ import annotations

import asyncio

from adapter import Context, Router

router = Router()
hold = True
started: list[str] = []


@router.message()
async def slow(ctx: Context) -> None:
    started.append(ctx.text)
    while hold:  # noqa: ASYNC110 (a test switch, flipped between server runs)
        await asyncio.sleep(0.05)
    await ctx.reply(f"finally: {ctx.text}")
