"""Slow, idle, pipelining and oversized clients against the real server on loopback, on
both stacks `serve` may run on (uvloop + httptools, and the fallback asyncio + h11), each
under the connection guard: each client is dropped on time, and Twilio's webhooks are
answered throughout.

Bounded: short timeouts, at most 2,000 sockets, every wait capped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from twilio.request_validator import RequestValidator

from adapter.cli.server import (
    HARD_LIMIT_FACTOR,
    MAX_HEADER_BYTES,
    MIN_VICTIM_AGE,
    AcceptErrorThrottle,
    ConnectionLimits,
    DescriptorWatch,
    EventLoop,
    Parser,
    loop_factory,
    serve,
    server_config,
)
from adapter.runtime.settings import Settings
from adapter.web.app import create_app
from tests import recording_bot
from tests.servers import wait_for

TOKEN = "slow-client-test-token"
ACCOUNT = "AC" + "3" * 32
FAST = ConnectionLimits(
    header_timeout=0.5, body_timeout=0.5, keepalive_timeout=1, max_connections=1000
)
# Deadlines far off: what happens first is not a timeout.
PATIENT = ConnectionLimits(
    header_timeout=60, body_timeout=60, keepalive_timeout=60, max_connections=1000
)
Stack = tuple[EventLoop, Parser]
SERVE_STACK: Stack = ("uvloop", "httptools")
FALLBACK_STACK: Stack = ("asyncio", "h11")


@pytest.fixture(
    params=[
        pytest.param(SERVE_STACK, id="uvloop-httptools"),
        pytest.param(FALLBACK_STACK, id="asyncio-h11"),
    ]
)
def stack(request: pytest.FixtureRequest) -> Stack:
    stack: Stack = request.param
    for module in stack:
        pytest.importorskip(module)
    return stack


@contextlib.asynccontextmanager
async def adapter(tmp_path: Path, limits: ConnectionLimits, stack: Stack) -> AsyncIterator[str]:
    """The adapter under the hardened server; yields its base URL."""
    async with adapter_server(tmp_path, limits, stack) as (base, _):
        yield base


@contextlib.asynccontextmanager
async def adapter_server(
    tmp_path: Path, limits: ConnectionLimits, stack: Stack
) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """The adapter under the hardened server, on `stack`'s event loop (in a thread of its
    own, as `serve` runs it) and parser: its base URL, and the server."""
    recording_bot.seen.clear()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        public_url=base,
        database=str(tmp_path / "slow.sqlite3"),
        bots="tests.recording_bot:router",
        twilio_base_url="http://127.0.0.1:9",
    )
    loop, http = stack
    config = server_config(
        create_app(settings),
        limits,
        http=http,
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
                runner.run(serve(server, [sock]))
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=run, name=f"server-{loop}-{http}", daemon=True)
    thread.start()
    try:
        await wait_for(lambda: server.started or failed)
        assert not failed, failed
        yield base, server
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 15)
        sock.close()


def webhook_form(sid_digit: str, body: str = "hello") -> dict[str, str]:
    return {
        "MessageSid": "SM" + sid_digit * 32,
        "AccountSid": ACCOUNT,
        "From": "+15551234567",
        "To": "+15005550006",
        "Body": body,
    }


async def signed_webhook(client: httpx.AsyncClient, base: str, sid_digit: str) -> int:
    form = webhook_form(sid_digit)
    signature = RequestValidator(TOKEN).compute_signature(f"{base}/api/sms", form)
    response = await client.post(
        f"{base}/api/sms",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    return response.status_code


def raw_webhook(base: str, form: dict[str, str], extra_headers: bytes = b"") -> bytes:
    """A signed webhook as bytes on the wire."""
    body = urlencode(form).encode()
    signature = RequestValidator(TOKEN).compute_signature(f"{base}/api/sms", form)
    return (
        b"POST /api/sms HTTP/1.1\r\nHost: %s\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Twilio-Signature: %s\r\nContent-Length: %d\r\n%s\r\n%s"
        % (
            base.removeprefix("http://").encode(),
            signature.encode(),
            len(body),
            extra_headers,
            body,
        )
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response with a Content-Length: its status and body."""
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def connect(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def closed_after(reader: asyncio.StreamReader, limit: float = 5.0) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it sent before."""
    started = time.monotonic()
    received = b""
    async with asyncio.timeout(limit):
        while True:
            try:
                chunk = await reader.read(4096)
            except ConnectionError:
                break
            if not chunk:
                break
            received += chunk
    return time.monotonic() - started, received


HEAD = b"POST /api/sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"


async def trickle(writer: asyncio.StreamWriter, start: bytes) -> None:
    """`start`, then a byte every 50 ms for 5 s (never a whole request), until cut off."""
    with contextlib.suppress(ConnectionError):
        writer.write(start)
        for _ in range(100):
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.05)


async def test_a_silent_connection_gets_408_and_is_closed(tmp_path: Path, stack: Stack) -> None:
    async with adapter(tmp_path, FAST, stack) as base:
        reader, writer = await connect(base)
        took, answer = await closed_after(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert took < 3  # the header timeout is 0.5 s; stock uvicorn never closes it


async def test_headers_trickled_byte_by_byte_are_cut_off_at_the_header_timeout(
    tmp_path: Path, stack: Stack
) -> None:
    async with adapter(tmp_path, FAST, stack) as base:
        reader, writer = await connect(base)
        sending = asyncio.create_task(trickle(writer, b"POST /api/sms HTTP/1.1\r\n"))
        took, answer = await closed_after(reader)
        sending.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert took < 3


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(HEAD + b"Content-Length: 100\r\n\r\nBody=hel", id="partial-body"),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nBody=\r\n", id="stalled-chunks"
        ),
    ],
)
async def test_a_stalled_body_is_cut_off_at_the_body_timeout_and_nothing_is_kept(
    tmp_path: Path, request_head: bytes, stack: Stack
) -> None:
    async with adapter(tmp_path, FAST, stack) as base:
        reader, writer = await connect(base)
        writer.write(
            request_head.replace(b"Content-Type", b"X-Twilio-Signature: x\r\nContent-Type")
        )
        took, _ = await closed_after(reader)
        writer.close()
    assert took < 3
    assert recording_bot.seen == []


async def test_a_body_trickled_byte_by_byte_is_cut_off_at_the_body_timeout(
    tmp_path: Path, stack: Stack
) -> None:
    # Each byte comes well inside any per-read timeout; the body's deadline is for all of it.
    async with adapter(tmp_path, FAST, stack) as base:
        reader, writer = await connect(base)
        head = HEAD + b"X-Twilio-Signature: x\r\nContent-Length: 1000\r\n\r\n"
        sending = asyncio.create_task(trickle(writer, head))
        took, _ = await closed_after(reader)
        sending.cancel()
        writer.close()
    assert took < 3  # the body timeout is 0.5 s
    assert recording_bot.seen == []


async def test_a_connection_cut_mid_body_keeps_nothing_and_the_next_webhook_is_served(
    tmp_path: Path, stack: Stack
) -> None:
    async with adapter(tmp_path, PATIENT, stack) as base:
        _reader, writer = await connect(base)
        writer.write(HEAD + b"X-Twilio-Signature: x\r\nContent-Length: 100\r\n\r\nBody=hel")
        await writer.drain()
        writer.transport.abort()  # RST mid-body
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"{base}/healthz")
    assert answer.status_code == 200
    assert recording_bot.seen == []


async def test_an_idle_kept_alive_connection_is_closed(tmp_path: Path, stack: Stack) -> None:
    async with adapter(tmp_path, FAST, stack) as base:
        reader, writer = await connect(base)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        took, _ = await closed_after(reader)
        writer.close()
    assert first.startswith(b"HTTP/1.1 200")
    assert took < 4  # keep-alive is 1 s


async def test_a_request_answered_in_time_is_not_cut_off(tmp_path: Path, stack: Stack) -> None:
    async with adapter(tmp_path, FAST, stack) as base, httpx.AsyncClient(timeout=5) as client:
        # Several in a row on one kept-alive connection, each well inside the timeouts.
        statuses = [await signed_webhook(client, base, digit) for digit in "abc"]
        await asyncio.sleep(0.8)  # past the header timeout, inside the keep-alive one
        statuses.append(await signed_webhook(client, base, "d"))
    assert statuses == [200, 200, 200, 200]


async def test_webhooks_are_answered_while_two_thousand_slow_clients_hold_connections(
    tmp_path: Path, stack: Stack
) -> None:
    # The header timeout is long here: only the cap on connections (evicting the
    # longest-waiting) keeps room for Twilio.
    limits = ConnectionLimits(
        header_timeout=60, body_timeout=60, keepalive_timeout=5, max_connections=500
    )
    async with adapter_server(tmp_path, limits, stack) as (base, server):
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        most_open = 0
        for _ in range(2000):
            reader, writer = await connect(base)
            writer.write(b"POST /api/sms HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            slow.append((reader, writer))
            # The server runs in another thread: a snapshot, less those on their way out.
            snapshot = list(server.server_state.connections)
            open_now = sum(not c.transport.is_closing() for c in snapshot)
            most_open = max(most_open, open_now)
        # Past the age at which a waiting connection gives way to a new one.
        await asyncio.sleep(MIN_VICTIM_AGE + 0.2)

        async with httpx.AsyncClient(timeout=5) as client:
            statuses = [await signed_webhook(client, base, digit) for digit in "01234"]

        still_open = await count_open([reader for reader, _ in slow])
        for _, writer in slow:
            writer.close()
    assert statuses == [200] * 5
    # The slow ones made room: past the cap of 500 a newcomer has a second for its
    # headers, never are more than twice the cap open (give or take those closing), and
    # in the end no more than the cap are held.
    assert still_open <= 500
    assert most_open <= HARD_LIMIT_FACTOR * 500 + 16
    assert sorted(recording_bot.seen) == ["SM" + d * 32 for d in "01234"]


async def count_open(readers: list[asyncio.StreamReader], wait: float = 2.0) -> int:
    """How many of `readers` the server neither answered nor closed within `wait` s."""

    async def answered_or_closed(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(1)

    tasks = [asyncio.create_task(answered_or_closed(reader)) for reader in readers]
    _, pending = await asyncio.wait(tasks, timeout=wait)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return len(pending)


def dropped(reader: asyncio.StreamReader) -> bool:
    """Closed by the server with no answer: an end of stream, or a reset (the server
    closed before reading all that was sent)."""
    return reader.at_eof() or reader.exception() is not None


async def test_a_newcomer_over_the_cap_evicts_the_longest_waiting_slow_then_idle_connection(
    tmp_path: Path, stack: Stack
) -> None:
    limits = ConnectionLimits(
        header_timeout=60, body_timeout=60, keepalive_timeout=60, max_connections=3
    )
    async with adapter(tmp_path, limits, stack) as base:
        # The oldest: answered, now idle between requests.
        idle, idle_writer = await connect(base)
        idle_writer.write(GET_HEALTHZ)
        assert (await read_response(idle))[0] == 200
        # Then two slow ones, their requests' heads half sent.
        slow = []
        for _ in range(2):
            reader, writer = await connect(base)
            writer.write(HEAD)
            slow.append((reader, writer))
        await asyncio.sleep(MIN_VICTIM_AGE + 0.2)  # all three old enough to give way

        newcomers = []
        statuses = []
        for digit, gives_way in zip("123", [slow[0][0], slow[1][0], idle], strict=True):
            reader, writer = await connect(base)
            writer.write(raw_webhook(base, webhook_form(digit)))
            statuses.append((await read_response(reader))[0])
            newcomers.append(writer)
            await wait_for(lambda r=gives_way: dropped(r), timeout=5)  # type: ignore[misc]
            if gives_way is slow[0][0]:
                # The slow before the idle, though the idle one has waited longer.
                assert not dropped(idle) and not dropped(slow[1][0])
        for writer in [idle_writer, *(w for _, w in slow), *newcomers]:
            writer.close()
    assert statuses == [200, 200, 200]
    assert sorted(recording_bot.seen) == ["SM" + d * 32 for d in "123"]


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
# 20 headers of about 1 KiB: a head over MAX_HEADER_BYTES.
BIG_PADDING = b"".join(b"X-Padding-%02d: %s\r\n" % (i, b"p" * 1000) for i in range(20))


async def test_a_head_over_the_limit_is_refused_at_once_not_buffered(
    tmp_path: Path, stack: Stack
) -> None:
    # A header longer than the limit and never finished: refused as soon as the limit is
    # passed, long before the header timeout (a minute here).
    async with adapter(tmp_path, PATIENT, stack) as base:
        reader, writer = await connect(base)
        writer.write(HEAD + b"X-Padding: " + b"a" * (MAX_HEADER_BYTES + 4096) + b"\r\n")
        # Within closed_after's 5 s: at once, not at the minute's header deadline.
        _, answer = await closed_after(reader)
        writer.close()
    # httptools' guard says why (431); h11 stops at its incomplete-head limit (400).
    expected = {"httptools": b"431", "h11": b"400"}[stack[1]]
    assert answer.split(b" ", 2)[1] == expected, answer[:100]


@pytest.mark.parametrize("behind", [b"", GET_HEALTHZ], ids=["alone", "pipelined"])
async def test_httptools_refuses_a_whole_head_over_the_limit_with_431(
    tmp_path: Path, behind: bytes
) -> None:
    # A head over the limit sent whole, alone or behind a request being answered (which
    # is answered first). h11 measures only a head still incomplete, so this is httptools'.
    async with adapter(tmp_path, PATIENT, SERVE_STACK) as base:
        reader, writer = await connect(base)
        writer.write(behind + b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + BIG_PADDING + b"\r\n")
        answers = [await read_response(reader) for _ in range(2 if behind else 1)]
        _, rest = await closed_after(reader)
        writer.close()
    assert [status for status, _ in answers] == ([200, 431] if behind else [431])
    assert rest == b""


async def test_a_large_head_under_the_limit_is_served(tmp_path: Path, stack: Stack) -> None:
    # 12 KiB of headers and a body of 10 KiB: more than one of the slices httptools is fed
    # in, the boundary inside the body. Answered like any other webhook.
    padding = BIG_PADDING[: 12 * len(BIG_PADDING) // 20]
    async with adapter(tmp_path, PATIENT, stack) as base:
        reader, writer = await connect(base)
        writer.write(raw_webhook(base, webhook_form("7", body="b" * 10_000), padding))
        status, _ = await read_response(reader)
        writer.close()
    assert status == 200
    assert recording_bot.seen == ["SM" + "7" * 32]


async def test_pipelined_requests_are_answered_in_order_then_the_idle_connection_closed(
    tmp_path: Path, stack: Stack
) -> None:
    async with adapter(tmp_path, FAST, stack) as base:
        reader, writer = await connect(base)
        writer.write(
            raw_webhook(base, webhook_form("1"))
            + raw_webhook(base, webhook_form("2"))
            + GET_HEALTHZ
        )
        answers = [await read_response(reader) for _ in range(3)]
        took, rest = await closed_after(reader)
        writer.close()
    assert [status for status, _ in answers] == [200, 200, 200]
    assert answers[2][1] == b"ok"
    assert rest == b""
    assert took < 4  # keep-alive is 1 s
    assert sorted(recording_bot.seen) == ["SM" + "1" * 32, "SM" + "2" * 32]


async def test_a_pipelined_request_left_unfinished_gets_408_after_the_answer_before_it(
    tmp_path: Path, stack: Stack
) -> None:
    async with adapter(tmp_path, FAST, stack) as base:
        reader, writer = await connect(base)
        writer.write(GET_HEALTHZ + b"POST /api/sms HTTP/1.1\r\nHost: x\r\n")
        status, _ = await read_response(reader)
        took, answer = await closed_after(reader)
        writer.close()
    assert status == 200
    assert answer.startswith(b"HTTP/1.1 408")
    assert took < 3


async def test_a_body_sent_after_its_early_answer_leaves_the_connection_usable(
    tmp_path: Path, stack: Stack
) -> None:
    async with adapter(tmp_path, FAST, stack) as base:
        reader, writer = await connect(base)
        # Unsigned: refused (403) before its body is read; the body follows all the same.
        writer.write(HEAD + b"Content-Length: 10\r\n\r\n")
        refused, _ = await read_response(reader)
        writer.write(b"Body=hello" + GET_HEALTHZ)
        answered, _ = await read_response(reader)
        took, rest = await closed_after(reader)
        writer.close()
    assert (refused, answered, rest) == (403, 200, b"")
    assert took < 4  # then idle, closed after the keep-alive's 1 s


def test_serve_runs_on_uvloop_and_httptools_when_installed() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from adapter.cli.server import default_event_loop, default_parser, server_stack

    for module in SERVE_STACK:
        pytest.importorskip(module)
    assert (default_event_loop(), default_parser()) == SERVE_STACK
    assert server_stack() == "uvicorn on uvloop + httptools"
    assert issubclass(server_config(create_app, FAST).http, HttpToolsProtocol)  # type: ignore[arg-type]
    assert issubclass(server_config(create_app, FAST, http="h11").http, H11Protocol)  # type: ignore[arg-type]


def test_accept_errors_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttle = AcceptErrorThrottle(interval=10, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    context: dict[str, Any] = {
        "message": "socket.accept() out of system resource",
        "exception": OSError(24, "Too many open files"),
    }
    try:
        with caplog.at_level(logging.ERROR, logger="adapter.server"):
            for step in range(3000):  # 3,000 failed accepts over 30 s
                now[0] = step / 100
                throttle(loop, context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "adapter.server"]
    assert len(lines) == 3
    assert "Too many open files" in lines[0]
    assert "(999 more such errors in the last 10s)" in lines[1]


def test_running_out_of_descriptors_is_logged_when_checked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    left = [500]
    watch = DescriptorWatch(left=lambda: left[0])
    with caplog.at_level(logging.ERROR, logger="adapter.server"):
        watch.check()
        left[0] = 0
        watch.check()
        left[0] = 300
        watch.check()
    lines = [r.getMessage() for r in caplog.records if r.name == "adapter.server"]
    assert len(lines) == 1
    assert lines[0].startswith("cannot accept connections: 0 file descriptors left")


# uvloop reports no failed accept to the exception handler (libuv accepts and closes the
# connections it has no descriptor for): serve's descriptor watch says so instead.
OUT_OF_DESCRIPTORS = """
import asyncio, logging, os, resource, socket, sys
import uvicorn
from adapter.cli.server import ConnectionLimits, loop_factory, serve, server_config

logging.basicConfig(stream=sys.stderr, level=logging.ERROR, format="%(name)s: %(message)s")


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    limits = ConnectionLimits(1, 1, 1, 10)
    config = server_config(app, limits, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(serve(server, [sock], descriptor_check_interval=0.05))
    while not server.started:
        await asyncio.sleep(0.01)
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    await asyncio.sleep(0.5)
    for fd in held:
        os.close(fd)
    server.should_exit = True
    await task


with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
    runner.run(main())
"""


def test_under_uvloop_running_out_of_descriptors_is_logged() -> None:
    pytest.importorskip("uvloop")
    result = subprocess.run(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert "adapter.server: cannot accept connections: 0 file descriptors left" in result.stderr
    assert "lower SMS_ADAPTER_MAX_CONNECTIONS or raise the descriptor limit" in result.stderr
