"""A bot for lifecycle and thread tests: hooks that record when they ran, a plain `def`
handler that blocks (`sleep N`), and a startup hook that fails on demand."""

from __future__ import annotations

import os
import time

from adapter import Context, Regex, Router

router = Router("lifecycle")
events: list[str] = []
# Another bot sharing the startup hook: it must run once all the same.
other = Router("other")


@router.on_startup
async def open_things() -> None:
    if os.environ.get("LIFECYCLE_BOT_FAIL"):
        raise ConnectionError("the database at db.example:5432 refused the connection")
    events.append("startup")


@router.on_shutdown
def close_things() -> None:
    events.append("shutdown")


other.include_router(router)


@router.message(Regex(r"^sleep (\d+(?:\.\d+)?)$"))
def blocking(ctx: Context) -> None:
    events.append(f"sleeping {ctx.match[1]}")
    time.sleep(float(ctx.match[1]))  # a blocking call, as in a sync database driver
    ctx.reply(f"slept {ctx.match[1]}s")


@router.message()
async def answer(ctx: Context) -> None:
    await ctx.reply(f"started: {events.count('startup')}")
