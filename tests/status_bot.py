"""A bot for tests: echoes, and records every delivery status of what it sent."""

from __future__ import annotations

from adapter import Context, Router, StatusUpdate

router = Router()
statuses: list[tuple[str, str]] = []


@router.message()
async def echo(ctx: Context) -> None:
    ctx.state["count"] = ctx.state.get("count", 0) + 1
    await ctx.reply(f"#{ctx.state['count']}: {ctx.text}")


@router.status()
async def remember(update: StatusUpdate) -> None:
    statuses.append((update.body, update.status))
