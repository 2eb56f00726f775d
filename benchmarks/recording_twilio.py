"""Twilio for the benchmarks: the emulator, noting when each Send Message arrives.

    uvicorn --factory benchmarks.recording_twilio:build   (reads TWILIO_ACCOUNT_SID/TOKEN)

BENCH_STATUS_CALLBACKS=0 starts it without posting status callbacks (their signing and
posting would otherwise share the benchmark machine's cores with the adapter);
POST /_bench/callbacks?on=1 (or 0) turns them on or off while it runs.
GET /_bench/count answers how many Send Message requests arrived so far;
GET /_bench/arrivals?prefix=P answers {body: arrival time (time.time())} for every send
whose Body starts with P.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse

from adapter.devtools.emulator import EmulatorConfig, create_emulator_app
from adapter.runtime.gc_tuning import tune_garbage_collector
from benchmarks.support import OUR_NUMBER

Scope = dict[str, Any]


class SendRecorder:
    """ASGI middleware noting when each Send Message request arrives, by its Body."""

    def __init__(self, app: Any, callbacks: bool) -> None:
        self.app = app
        self.callbacks = callbacks
        self.arrivals: dict[str, float] = {}
        self.sends = 0

    def bench(self, request: Request) -> JSONResponse:
        path = request.url.path
        if path == "/_bench/count":
            return JSONResponse(self.sends)
        if path == "/_bench/callbacks" and request.method == "POST":
            self.callbacks = request.query_params.get("on") == "1"
            return JSONResponse(self.callbacks)
        if path == "/_bench/arrivals":
            prefix = request.query_params.get("prefix", "")
            return JSONResponse(
                {body: at for body, at in self.arrivals.items() if body.startswith(prefix)}
            )
        return JSONResponse("not found", status_code=404)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/_bench/"):
            await self.bench(Request(scope, receive))(scope, receive, send)
            return
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith("/Messages.json")
        ):
            await self.app(scope, receive, send)
            return
        arrived = time.time()
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        form = parse_qsl(b"".join(chunks).decode(), keep_blank_values=True)
        self.sends += 1
        self.arrivals.setdefault(dict(form).get("Body", ""), arrived)
        if not self.callbacks:
            form = [(name, value) for name, value in form if name != "StatusCallback"]
        body = urlencode(form).encode()
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def build() -> SendRecorder:
    # Callbacks still in flight when the adapter stops would each log a failure.
    logging.getLogger("adapter.devtools.emulator").setLevel(logging.ERROR)
    config = EmulatorConfig(
        account_sid=os.environ["TWILIO_ACCOUNT_SID"],
        auth_token=os.environ["TWILIO_AUTH_TOKEN"],
        numbers=[OUR_NUMBER],
    )
    callbacks = os.environ.get("BENCH_STATUS_CALLBACKS", "1") == "1"
    app = SendRecorder(create_emulator_app(config), callbacks)
    tune_garbage_collector()  # as `sms-adapter emulator` does
    return app
