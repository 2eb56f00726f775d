"""Retention keeps a busy SQLite store's file flat: texts written for longer than the
retention, with and without the retention worker, the file's size printed as they go.

    python benchmarks/retention.py [--texts 100000] [--rate 500] [--retention 60s]

Each text takes the store's whole path as the adapter drives it: added (the webhook),
claimed and finished with one reply (the dispatcher), the reply claimed, sent and
delivered (the sender and its status callback), and cached for history. `--rate` texts a
second, in the real `SQLiteStore` (one file in a temporary directory, WAL mode), while
`RetentionWorker` deletes what is older than `--retention` every `--interval`, in its
batches of 1,000. The same texts are then written to a second file without the worker:
the baseline. Printed every `--every` seconds: the texts written and the size of the
database file (its WAL, emptied at each checkpoint, aside); last, the ratio of the two
final sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.delivery.retention import RetentionWorker
from adapter.durations import parse_duration
from adapter.store.base import HistoryEntry, ReplyDraft
from adapter.store.sqlite import SQLiteStore

OURS = "+15005550006"
BODY = "A text of a typical length, asking the bot something it can answer. " * 2


def file_size_mb(path: Path) -> float:
    """The database file's size; its WAL comes and goes with checkpoints, so not counted."""
    return path.stat().st_size / 1e6 if path.exists() else 0.0


async def one_text(store: SQLiteStore, index: int) -> None:
    """One text through the store as the adapter handles it, ending delivered."""
    person = f"+1555{index % 10_000:07d}"
    conversation = f"{OURS}|{person}"
    message_sid = f"SM{index:032x}"
    now = datetime.now(UTC)
    payload = {"MessageSid": message_sid, "From": person, "To": OURS, "Body": BODY}
    await store.add_inbound(message_sid, conversation, payload, now)
    # Other texts' turns run meanwhile: take whichever is claimable, as the dispatcher does.
    for job in await store.claim_inbound(1, 60):
        reply = ReplyDraft(job.conversation, {"to": person, "from": OURS, "body": BODY})
        await store.finish_inbound(job.id, [reply])
    for row in await store.claim_outbound(1, 60, datetime.now(UTC)):
        reply_sid = f"SM{row.id:032x}ff"
        await store.mark_sent(row.id, reply_sid, "queued")
        await store.update_status(reply_sid, "delivered", None)
    await store.save_history(
        [
            HistoryEntry(
                sid=message_sid,
                conversation=conversation,
                direction="inbound",
                status="received",
                error_code=None,
                body=BODY,
                num_media=0,
                num_segments=1,
                at=now,
                payload={"from": person, "to": OURS},
            )
        ]
    )


async def write_texts(
    path: Path, args: argparse.Namespace, retention: timedelta | None, label: str
) -> float:
    store = SQLiteStore(path)
    await store.open()
    worker = None
    if retention is not None:
        worker = RetentionWorker(store, retention, interval=args.interval)
        worker.start()
    started = time.monotonic()
    next_report = started
    try:
        in_flight: set[asyncio.Task[None]] = set()
        for index in range(args.texts):
            # Paced: text `index` is due `index / rate` seconds after the start.
            delay = started + index / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one_text(store, index))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            if time.monotonic() >= next_report:
                elapsed = time.monotonic() - started
                print(
                    f"{label:>12} {elapsed:7.0f} s {index:>9,} texts {file_size_mb(path):8.1f} MB"
                )
                next_report += args.every
        await asyncio.gather(*in_flight)
    finally:
        if worker is not None:
            await worker.stop()
        await store.close()
    size = file_size_mb(path)
    print(f"{label:>12} {time.monotonic() - started:7.0f} s {args.texts:>9,} texts {size:8.1f} MB")
    return size


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500.0, help="texts a second")
    parser.add_argument("--retention", type=parse_duration, default=timedelta(minutes=1))
    parser.add_argument("--interval", type=parse_duration, default=timedelta(seconds=10))
    parser.add_argument("--every", type=float, default=20.0, help="seconds between lines")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without it")
    args = parser.parse_args()
    print(
        f"{args.texts:,} texts at {args.rate:g}/s, retention {args.retention}, "
        f"the worker every {args.interval}"
    )
    with tempfile.TemporaryDirectory() as directory:
        kept = await write_texts(
            Path(directory) / "retention.sqlite3", args, args.retention, "retention"
        )
        if args.no_baseline:
            return
        grown = await write_texts(Path(directory) / "baseline.sqlite3", args, None, "no retention")
    print(f"file size with retention / without: {kept / grown:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
