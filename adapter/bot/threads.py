"""Plain `def` handlers run in a thread of their own, so one that blocks (time.sleep, a
blocking HTTP client, a slow database driver) never stalls the event loop: webhooks,
health checks and SIGTERM keep being answered on time, as Starlette does for sync
endpoints.

The threads are daemon threads, made one per call: a handler past its time limit is
abandoned (a thread cannot be stopped) and must not keep the process from exiting at
SIGTERM, which the threads of a `ThreadPoolExecutor` would (Python joins them at exit).
How many run at once is bounded by the dispatcher's concurrency.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_in_thread(function: Callable[[], T], *, name: str = "bot-handler") -> T:
    """`function()` in a new daemon thread; its result or exception, awaited. Cancelling
    the await abandons the thread: it runs on, and its outcome is dropped."""
    # Imported here: `from adapter import Router` stays free of asyncio's ~25 ms import
    # (the adapter has loaded it long before a handler runs).
    import asyncio

    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()  # as asyncio.to_thread: log fields, etc.

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():  # cancelled: the caller stopped waiting
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = context.run(function)
        except BaseException as error:
            outcome: tuple[T | None, BaseException | None] = (None, error)  # to the awaiter
        else:
            outcome = (result, None)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    threading.Thread(target=target, name=name, daemon=True).start()
    return await done
