"""A bot that reads every text and answers none: ingest benchmarks measure intake, not sends."""

from __future__ import annotations

from adapter import Context, Router

router = Router()


@router.message()
async def read_only(ctx: Context) -> None:
    ctx.state["seen"] = ctx.state.get("seen", 0) + 1
