"""Point reads of the SQLite store on the event loop's own thread, and the opt-out cache.

Why: every text reads its conversation's state and the person's opt-out before the bot
runs and again before its reply is sent. Sent to the writer (`sqlite_writer.py`), each
read would wait behind whatever writes are queued and the commit in progress (and, when
the writer ran on a thread of its own, cost two thread hand-offs: about 150 µs of CPU
when the adapter is quiet, against 6 µs for the SELECT). In WAL
mode a second connection reads the last committed snapshot without blocking the writer
or being blocked by it, so a read here sees everything a caller has been told was
committed (the writer resolves a call only after its COMMIT).

A read that would have to wait (SQLITE_BUSY: another process holds the file, or a WAL
recovery is running) must not stall the event loop and every connection on it: the
connection has no busy timeout, and any SQLite error hands the read back to the caller
(`NOT_READ`), which then sends it through the writer, where the store's busy timeout
and error messages apply.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, TypeVar

T = TypeVar("T")


class _NotRead:
    def __repr__(self) -> str:
        return "NOT_READ"


NOT_READ: Final = _NotRead()

# Paths that name a database private to one connection: a second connection would read
# another, empty, database.
_PRIVATE_PATHS = frozenset({"", ":memory:"})


class LoopReader:
    """A read-only connection used only by the thread that opened it (the event loop's)."""

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._owner: int | None = None

    def open(self, path: str) -> None:
        """Open after the writer has created and migrated the file. Any failure leaves
        the reader closed: every read then goes through the writer, as before."""
        if path in _PRIVATE_PATHS or "mode=memory" in path:
            return
        try:
            db = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA query_only = ON")  # a bug here must not write past the writer
        except sqlite3.Error:
            db.close()
            return
        self._db, self._owner = db, threading.get_ident()

    def close(self) -> None:
        db, self._db, self._owner = self._db, None, None
        if db is not None:
            db.close()

    def read(self, work: Callable[[sqlite3.Connection], T]) -> T | _NotRead:
        """`work` run here, or NOT_READ when it must go through the writer instead."""
        db = self._db
        if db is None or threading.get_ident() != self._owner:
            return NOT_READ
        try:
            return work(db)
        except sqlite3.Error:
            # In autocommit a failed SELECT leaves no transaction open: the connection
            # stays usable, and this read goes through the writer.
            return NOT_READ


class OptOutCache:
    """The opt-outs last read or written, so the two checks every text makes (before
    its turn and before its reply is sent) seldom reach the file.

    Sound only because one process owns a SQLite file and every change to opt-outs goes
    through its store (`set_opted_out`): an entry is written after its commit, and a
    read that had to wait for the writer is kept only if no opt-out was written while it
    waited (`version`), so a STOP is never hidden by an older read. Bounded: the least
    recently used entries go first.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self.version = 0  # counts writes

    def get(self, ours: str, person: str) -> bool | None:
        key = (ours, person)
        opted_out = self._entries.get(key)
        if opted_out is not None:
            self._entries.move_to_end(key)
        return opted_out

    def read(self, ours: str, person: str, opted_out: bool, *, as_of: int) -> None:
        if as_of == self.version:
            self._put((ours, person), opted_out)

    def written(self, ours: str, person: str, opted_out: bool) -> None:
        self.version += 1
        self._put((ours, person), opted_out)

    def _put(self, key: tuple[str, str], opted_out: bool) -> None:
        self._entries[key] = opted_out
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
