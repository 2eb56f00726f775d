"""What both stores do with rows: JSON payloads in and out, a status's move forward, the
history upsert, and a row read back as the contract's record.

A row is whatever the driver returns, indexed by column name (sqlite3.Row,
asyncpg.Record). The stores keep times differently (SQLite as epoch seconds,
PostgreSQL as timestamptz), so each passes the conversion of its time columns.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from adapter.store.base import (
    HistoryEntry,
    InboundJob,
    OutboundJob,
    OutboundRecord,
)
from adapter.twilio.statuses import STATUS_RANK

T = TypeVar("T", InboundJob, OutboundJob, OutboundRecord, HistoryEntry)

# The columns an OutboundRecord is read from.
RECORD_COLUMNS = ", ".join(field.name for field in dataclasses.fields(OutboundRecord))

# The records' time fields; every other field is its column as the driver returns it.
_TIMES = frozenset({"received_at", "created_at", "in_doubt_since", "at"})


def read_row(kind: type[T], row: Any, to_datetime: Callable[[Any], datetime]) -> T:
    """`kind` from a row whose columns are named as its fields: the payload decoded,
    times through `to_datetime` (a NULL time stays None)."""
    values: dict[str, Any] = {}
    for name in _field_names(kind):
        value = row[name]
        if name == "payload":
            value = decode(value)
        elif name in _TIMES and value is not None:
            value = to_datetime(value)
        values[name] = value
    return kind(**values)


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(kind: type[Any]) -> tuple[str, ...]:
    # Looked up once per record type (a handful), not on every row of every claim.
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(field.name for field in dataclasses.fields(kind))
    return names


def history_values(entry: HistoryEntry, at: object) -> tuple[object, ...]:
    """The columns of `entry` in the history table's order, its time given as stored."""
    return (
        entry.sid,
        entry.conversation,
        entry.direction,
        entry.status,
        entry.error_code,
        entry.body,
        entry.num_media,
        entry.num_segments,
        at,
        encode(entry.payload),
    )


def save_history_sql(marker: str) -> str:
    """The upsert of one history entry, its values as `history_values` orders them, with
    `marker` and a position as placeholders ("$" for PostgreSQL, "?" for SQLite).
    The status only moves forward (an entry without one takes the one given), as in
    `moves_forward`; the other fields take the newest values."""
    values = ", ".join(f"{marker}{position}" for position in range(1, 11))
    return f"""
    INSERT INTO history AS kept (sid, conversation, direction, status, error_code, body,
                                 num_media, num_segments, at, payload)
    VALUES ({values})
    ON CONFLICT (sid) DO UPDATE SET
        conversation = excluded.conversation,
        direction = excluded.direction,
        status = CASE
            WHEN excluded.status IS NULL OR kept.status IS NULL
                 OR {_rank("excluded.status")} > {_rank("kept.status")}
            THEN excluded.status ELSE kept.status END,
        error_code = coalesce(excluded.error_code, kept.error_code),
        body = excluded.body,
        num_media = excluded.num_media,
        num_segments = excluded.num_segments,
        at = excluded.at,
        payload = excluded.payload
    """


def _rank(expression: str) -> str:
    """STATUS_RANK as SQL: the rank of a status, -1 for one we do not know."""
    cases = " ".join(f"WHEN '{status}' THEN {rank}" for status, rank in sorted(STATUS_RANK.items()))
    return f"(CASE {expression} {cases} ELSE -1 END)"


def moves_forward(current: str | None, new: str) -> bool:
    """Whether `new` may replace `current` (see STATUS_RANK); an unknown status never does."""
    if new not in STATUS_RANK:
        return False
    return STATUS_RANK[new] > STATUS_RANK.get(current or "", -1)


# allow_nan=False: NaN is not JSON, and PostgreSQL's json type refuses it. Built once:
# json.dumps with options builds a new encoder on every call (three per text).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def encode(value: dict[str, Any]) -> str:
    return _ENCODER.encode(value)


def decode(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text)
    return value
