"""Group commits on the SQLite store's one connection.

Calls queue up while a transaction is being committed, then run together in the next
one, so a burst of webhooks costs one fsync instead of one each. A SAVEPOINT per call
keeps a failing call from failing the others of its batch, and a call's future resolves
only after its batch has committed, so "returned" always means "durable".

Where each part runs, and why: the statements run on the event loop's thread, and only
the COMMIT (the fsync, which is most of a transaction's time and releases the GIL) runs
on a thread of its own. Running the statements on that thread too meant a hand-off of
the GIL for every statement, since the sqlite3 module lets it go around each one, and
two thread wake-ups for every call: measured at 200 texts/s, that was about a quarter of
the adapter's CPU, and it made a batch's statements wait for the event loop to let go of
the GIL. A statement here takes microseconds; the work given to `run` must stay that
small (one bounded batch of rows), since the event loop waits for it.

Never blocked by another process: the connection has no busy timeout on the event loop.
If another process holds the file's write lock, BEGIN is retried on the commit thread,
which waits up to the store's busy timeout as every call did before.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from adapter.store.base import StoreError

T = TypeVar("T")

logger = logging.getLogger("adapter.store.sqlite")

# Enough to amortise one fsync over a burst, small enough that the first call of a
# batch does not wait behind thousands of others.
MAX_BATCH = 500


class _Call(Generic[T]):
    __slots__ = ("future", "single_statement", "work")

    def __init__(
        self,
        work: Callable[[sqlite3.Connection], T],
        future: asyncio.Future[T],
        single_statement: bool,
    ) -> None:
        self.work = work
        self.future = future
        # A call that changes at most one statement's worth needs no savepoint: SQLite
        # undoes a failed statement by itself, and reads change nothing. Skipping it
        # matters on the paths every text takes (two fewer statements per call).
        self.single_statement = single_statement


class _CommitThread:
    """Runs what it is handed, one at a time, and resolves an asyncio future with the
    outcome. Leaner than `run_in_executor` (a pool's locks, a concurrent Future and its
    callbacks), which cost a tenth of a millisecond per commit here."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        # A daemon: a process that exits without close() must not hang on this thread;
        # SQLite's journal makes being cut off mid-transaction safe.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def stop(self) -> None:
        """End the thread once what it was handed is done."""
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, fn, args = job
            outcome: tuple[Any, BaseException | None]
            try:
                outcome = (fn(*args), None)
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome = (None, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more


def _settle(future: asyncio.Future[Any], outcome: tuple[Any, BaseException | None]) -> None:
    if future.done():  # the caller was cancelled
        return
    value, error = outcome
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class GroupCommitWriter:
    """Owns the store's connection: opened, committed and closed on its commit thread,
    written on the event loop that opened it."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        translate: Callable[[sqlite3.Error], StoreError],
        busy_timeout: float,
    ) -> None:
        self._connect = connect
        self._translate = translate
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._db: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: _CommitThread | None = None
        self._queue: deque[_Call[Any]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._accepting = False
        self.commits = 0

    async def start(self, name: str) -> None:
        if self._db is not None:
            raise RuntimeError("the store is already open")
        loop = asyncio.get_running_loop()
        thread = _CommitThread(name)
        try:
            db = await thread.run(self._connect)
            # From here on the event loop must never wait for a lock (see the module doc).
            db.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            thread.stop()
            raise
        self.commits = 0
        self._db, self._loop, self._thread = db, loop, thread
        self._accepting = True

    async def stop(self) -> None:
        """Run every call already queued, then close the connection and end the thread."""
        db, thread = self._db, self._thread
        if db is None or thread is None or not self._accepting:
            return
        self._accepting = False  # no new calls from here on
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        await thread.run(db.close)
        thread.stop()
        self._db = self._loop = self._thread = None

    async def run(
        self, work: Callable[[sqlite3.Connection], T], *, single_statement: bool = False
    ) -> T:
        if not self._accepting or self._loop is None:
            raise StoreError("the store is not open")
        if asyncio.get_running_loop() is not self._loop:
            raise StoreError("the SQLite store was opened on another event loop")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.append(_Call(work, future, single_statement))
        if self._flusher is None:
            # Started on the next turn of the loop, so that calls made in this one share
            # its transaction.
            self._flusher = self._loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                count = min(len(self._queue), MAX_BATCH)
                batch = [self._queue.popleft() for _ in range(count)]
                await self._run_batch(batch)
        finally:
            self._flusher = None

    async def _run_batch(self, batch: list[_Call[Any]]) -> None:
        db, thread = self._connection()
        try:
            await self._begin(db, thread)
            try:
                outcomes = [
                    self._run_single(db, call.work)
                    if call.single_statement
                    else self._run_in_savepoint(db, call.work)
                    for call in batch
                ]
                await thread.run(db.execute, "COMMIT")
            except Exception:
                # A failed COMMIT can leave the transaction open; the next BEGIN needs
                # it gone.
                _roll_back(db)
                raise
            self.commits += 1
        except Exception as exc:
            # The transaction is gone, and with it every call of the batch: each
            # caller learns it failed, so nothing is acknowledged that was not kept.
            logger.warning("SQLite store: a transaction of %d calls failed: %s", len(batch), exc)
            outcomes = [(None, self._for_caller(exc)) for _ in batch]
        for call, (value, error) in zip(batch, outcomes, strict=True):
            if call.future.done():  # the caller was cancelled and no longer waits
                continue
            if error is not None:
                call.future.set_exception(error)
            else:
                call.future.set_result(value)

    def _connection(self) -> tuple[sqlite3.Connection, _CommitThread]:
        # Set from start() until stop() has seen the last batch committed.
        assert self._db is not None and self._thread is not None
        return self._db, self._thread

    async def _begin(self, db: sqlite3.Connection, thread: _CommitThread) -> None:
        # IMMEDIATE takes the write lock now, so a busy file fails here, not midway.
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # extended codes too
                raise
            await thread.run(self._begin_waiting, db)

    def _begin_waiting(self, db: sqlite3.Connection) -> None:
        """BEGIN on the commit thread, waiting for another process's lock up to the
        store's busy timeout."""
        db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        try:
            db.execute("BEGIN IMMEDIATE")
        finally:
            db.execute("PRAGMA busy_timeout = 0")

    def _run_single(
        self, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]
    ) -> tuple[Any, BaseException | None]:
        try:
            return work(db), None
        except Exception as exc:
            if not db.in_transaction:
                raise
            return None, self._for_caller(exc)

    def _run_in_savepoint(
        self, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]
    ) -> tuple[Any, BaseException | None]:
        db.execute("SAVEPOINT call")
        try:
            value = work(db)
        except Exception as exc:
            if not db.in_transaction:
                # SQLite rolled back the whole transaction (disk full, I/O error).
                raise
            db.execute("ROLLBACK TO call")
            db.execute("RELEASE call")
            return None, self._for_caller(exc)
        db.execute("RELEASE call")
        return value, None

    def _for_caller(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            error = self._translate(exc)
            error.__cause__ = exc
            return error
        return exc


def _roll_back(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("SQLite store: ROLLBACK failed")
