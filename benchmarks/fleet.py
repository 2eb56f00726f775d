"""Fleet benchmark: ingest and end-to-end throughput of one process on SQLite, and of one
and three replicas on PostgreSQL, measured in one run.

    python benchmarks/fleet.py [--texts 2000] [--people 200] [--connections 32] [--rounds 2]

Each configuration gets a fresh database and fresh `sms-adapter serve` processes (the
echo bot; limits high enough not to bind) and the same burst of signed webhooks, posted
over keep-alive connections spread round-robin over its replicas. Twilio is the built-in
emulator in its own process.

- ingest: texts answered 200 (committed) per second, from the first post to the last 200;
- end-to-end: texts whose reply Twilio accepted per second, from the first post until
  every reply is marked sent in the store.

Rounds alternate between configurations and medians are reported, so all of them see the
same machine load. PostgreSQL: `SMS_ADAPTER_TEST_POSTGRES` or the local server (trust
authentication); each round uses a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import asyncpg
import httpx
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_SID = "AC" + "f1" * 16
AUTH_TOKEN = "fleet-benchmark-token"
OUR_NUMBER = "+15005550006"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Config:
    name: str
    replicas: int
    postgres: bool


CONFIGS = (
    Config("SQLite, 1 process", 1, postgres=False),
    Config("PostgreSQL, 1 replica", 1, postgres=True),
    Config("PostgreSQL, 3 replicas", 3, postgres=True),
)


@dataclass(frozen=True)
class Result:
    ingest: float  # texts/s
    end_to_end: float  # texts/s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(commands: list[tuple[list[str], dict[str, str], str]]) -> Iterator[None]:
    """Start every (argv, environment, ready URL), wait until all are ready; stop them all."""
    processes = [
        subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for argv, env, _ in commands
    ]
    try:
        deadline = time.monotonic() + 60
        for process, (argv, _, ready) in zip(processes, commands, strict=True):
            while True:
                if process.poll() is not None:
                    error = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"{' '.join(argv[2:])} exited:\n{error}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(ready, timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{ready} never became ready")
                time.sleep(0.1)
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "adapter.cli", *args]


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env |= {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    env |= {f"SMS_ADAPTER_{name.upper()}": value for name, value in settings.items()}
    return env


def webhook_request(port: int, index: int, person: str) -> bytes:
    """One signed messaging webhook, as the bytes of an HTTP/1.1 request."""
    url = f"http://127.0.0.1:{port}/api/sms"
    sid = f"SM{uuid.uuid4().hex}"
    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": person,
        "To": OUR_NUMBER,
        "Body": f"text {index}",
        "NumMedia": "0",
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }
    body = urlencode(form).encode()
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
    head = (
        f"POST /api/sms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        f"X-Twilio-Signature: {signature}\r\n\r\n"
    )
    return head.encode() + body


async def post_all(port: int, requests: list[bytes]) -> None:
    """Post `requests` one after another on one keep-alive connection; a 503 is posted
    again, as Twilio would. A bare HTTP client: the load must cost little next to the
    server's work, on a machine the servers share."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            while True:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if status == 200:
                    break
                if status != 503:
                    raise RuntimeError(f"the adapter answered {status}")
                await asyncio.sleep(0.05)
    finally:
        writer.close()


async def sent_count(database: str, schema: str | None) -> int:
    if schema is None:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return int(
                db.execute("SELECT count(*) FROM outbound WHERE state = 'sent'").fetchone()[0]
            )
    conn = await asyncpg.connect(database.split("?")[0])
    try:
        count = await conn.fetchval(f"SELECT count(*) FROM {schema}.outbound WHERE state = 'sent'")
    finally:
        await conn.close()
    return int(count)


async def burst(
    ports: list[int], args: argparse.Namespace, database: str, schema: str | None
) -> Result:
    people = [f"+1555{n:07d}" for n in range(args.people)]
    lanes: list[tuple[int, list[bytes]]] = [
        (ports[lane % len(ports)], []) for lane in range(args.connections)
    ]
    for index in range(args.texts):
        port, requests = lanes[index % len(lanes)]
        requests.append(webhook_request(port, index, people[index % len(people)]))

    started = time.perf_counter()
    await asyncio.gather(*(post_all(port, requests) for port, requests in lanes))
    ingested = time.perf_counter()
    while await sent_count(database, schema) < args.texts:
        if time.perf_counter() - started > args.timeout:
            raise RuntimeError(f"not every reply was sent within {args.timeout}s")
        await asyncio.sleep(0.05)
    done = time.perf_counter()
    return Result(args.texts / (ingested - started), args.texts / (done - started))


def measure(config: Config, args: argparse.Namespace, twilio: str, scratch: Path) -> Result:
    schema = f"bench_{uuid.uuid4().hex[:10]}" if config.postgres else None
    if schema is not None:
        database = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}"
    else:
        database = str(scratch / f"{uuid.uuid4().hex}.sqlite3")
    ports = [free_port() for _ in range(config.replicas)]
    commands = [
        (
            cli("serve", "--port", str(port)),
            environment(
                database=database,
                twilio_base_url=twilio,
                bots="bots.echo:router",
                log_level="warning",
                rate_limit="1000000/1s",
                max_concurrency="64",
            ),
            f"http://127.0.0.1:{port}/readyz",
        )
        for port in ports
    ]
    try:
        with running(commands):
            return asyncio.run(burst(ports, args, args.postgres if schema else database, schema))
    finally:
        if schema is not None:
            asyncio.run(drop_schema(args.postgres, schema))


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--postgres", default=os.environ.get("SMS_ADAPTER_TEST_POSTGRES") or DEFAULT_POSTGRES
    )
    args = parser.parse_args()
    if urlsplit(args.postgres).scheme not in ("postgresql", "postgres"):
        parser.error("--postgres must be a postgresql:// URL")

    results: dict[str, list[Result]] = {config.name: [] for config in CONFIGS}
    emulator_port = free_port()
    twilio = f"http://127.0.0.1:{emulator_port}"
    emulator = (
        cli("emulator", "--port", str(emulator_port)),
        environment(log_level="warning"),
        f"{twilio}/_emulator/messages?to=%2B10000000000",
    )
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as scratch, running([emulator]):
        for round_ in range(1, args.rounds + 1):
            for config in CONFIGS:
                httpx.delete(f"{twilio}/_emulator/messages", timeout=30)
                result = measure(config, args, twilio, Path(scratch))
                results[config.name].append(result)
                print(
                    f"round {round_}: {config.name:<24} ingest {result.ingest:7.0f}/s   "
                    f"end-to-end {result.end_to_end:7.0f}/s",
                    flush=True,
                )

    medians = {
        name: Result(
            statistics.median(r.ingest for r in rounds),
            statistics.median(r.end_to_end for r in rounds),
        )
        for name, rounds in results.items()
    }
    base = medians[CONFIGS[0].name]
    print(
        f"\n{args.texts} texts from {args.people} people over {args.connections} connections, "
        f"median of {args.rounds} round(s), {os.cpu_count()} CPU(s)\n"
    )
    rows = [("configuration", "ingest texts/s", "end-to-end texts/s", "vs SQLite: ingest, e2e")]
    for config in CONFIGS:
        m = medians[config.name]
        rows.append(
            (
                config.name,
                f"{m.ingest:.0f}",
                f"{m.end_to_end:.0f}",
                f"x{m.ingest / base.ingest:.2f}, x{m.end_to_end / base.end_to_end:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("| " + " | ".join(cells) + " |")
        if n == 0:
            rules = ["-" * (widths[0] + 2)] + ["-" * (width + 1) + ":" for width in widths[1:]]
            print("|" + "|".join(rules) + "|")
    one, three = medians[CONFIGS[1].name], medians[CONFIGS[2].name]
    print(
        f"\n3 replicas vs 1 on PostgreSQL: ingest x{three.ingest / one.ingest:.2f}, "
        f"end-to-end x{three.end_to_end / one.end_to_end:.2f}"
    )


if __name__ == "__main__":
    main()
