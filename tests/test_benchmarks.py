"""Each benchmark script starts and explains itself (`--help`): they run outside the suite
(they take minutes and need wrk), so this catches a script broken by a change elsewhere.
And the lean emulated Twilio they send replies to answers like Twilio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.processes import free_port
from tests.servers import bound_socket, serve, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", ["ingest.py", "latency.py", "soak.py", "retention.py"])
def test_benchmark_script_explains_itself(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


# -- benchmarks/lean_twilio.py: the emulated Twilio of the throughput benchmarks ----------

LEAN_SID, LEAN_TOKEN = "AC" + "c" * 32, "lean-token"
OUR_NUMBER, PERSON = "+15005550006", "+15551230000"


@contextlib.contextmanager
def lean_twilio(tmp_path: Path) -> Iterator[str]:
    """benchmarks/lean_twilio.py in its own process on loopback, as the scripts run it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "BENCH_"))}
    env.update(TWILIO_ACCOUNT_SID=LEAN_SID, TWILIO_AUTH_TOKEN=LEAN_TOKEN, PYTHONPATH=str(ROOT))
    with (tmp_path / "lean_twilio.log").open("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.lean_twilio", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/_bench/count", timeout=1).status_code == 200:
                        break
                log.seek(0)
                assert process.poll() is None, log.read()
                assert time.monotonic() < deadline, "lean_twilio did not start"
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


async def test_lean_twilio_answers_the_official_client_and_signs_its_callbacks(
    tmp_path: Path,
) -> None:
    callbacks: list[tuple[str, str, dict[str, str]]] = []

    async def receiver(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        signature = request.headers.get("x-twilio-signature", "")
        callbacks.append((str(request.url), signature, form))
        await Response(status_code=204)(scope, receive, send)

    sock, receiver_url = bound_socket()
    async with serve(receiver, sock):
        with lean_twilio(tmp_path) as twilio_url:
            client = Client(LEAN_SID, LEAN_TOKEN)
            client.api.base_url = twilio_url  # the Messages API's base URL
            status_url = f"{receiver_url}/status?adapter=1"
            try:
                created = await asyncio.to_thread(
                    lambda: client.messages.create(
                        to=PERSON, from_=OUR_NUMBER, body="Hello, lean", status_callback=status_url
                    )
                )
                with pytest.raises(TwilioRestException) as no_body:
                    await asyncio.to_thread(
                        lambda: client.messages.create(to=PERSON, from_=OUR_NUMBER)
                    )
                stranger = Client(LEAN_SID, "wrong-token")
                stranger.api.base_url = twilio_url
                with pytest.raises(TwilioRestException) as refused:
                    await asyncio.to_thread(
                        lambda: stranger.messages.create(to=PERSON, from_=OUR_NUMBER, body="x")
                    )
            finally:
                client.http_client.session.close()
            await wait_for(lambda: len(callbacks) >= 3)
            async with httpx.AsyncClient(base_url=twilio_url) as bench:
                count = (await bench.get("/_bench/count")).json()
                arrivals = (await bench.get("/_bench/arrivals", params={"prefix": "Hello"})).json()
                tally = (await bench.get("/_bench/callbacks")).json()

    assert created.sid.startswith("SM") and len(created.sid) == 34
    assert (created.status, created.direction, created.num_segments, created.num_media) == (
        "queued",
        "outbound-api",
        "1",
        "0",
    )
    assert (created.account_sid, created.from_, created.to, created.body) == (
        LEAN_SID,
        OUR_NUMBER,
        PERSON,
        "Hello, lean",
    )
    assert created.date_created is not None and created.date_created.tzinfo is not None
    assert (no_body.value.status, no_body.value.code) == (400, 21602)
    assert (refused.value.status, refused.value.code) == (401, 20003)

    validator = RequestValidator(LEAN_TOKEN)
    assert [form["MessageStatus"] for _, _, form in callbacks] == ["queued", "sent", "delivered"]
    for url, signature, form in callbacks:
        assert url == status_url
        assert validator.validate(url, form, signature)
        assert form == {
            "SmsSid": created.sid,
            "SmsStatus": form["MessageStatus"],
            "MessageStatus": form["MessageStatus"],
            "To": PERSON,
            "MessageSid": created.sid,
            "AccountSid": LEAN_SID,
            "From": OUR_NUMBER,
            "ApiVersion": "2010-04-01",
        }
    assert count == 1
    assert list(arrivals) == ["Hello, lean"]
    assert tally == {"answered": {status_url: {"204": 3}}, "failed": {}}
