"""The console's HTTP face: the page, its static files, its JSON API and its event stream.

GET  /console                        the page (console.html, .css, .js beside this file)
GET  /console/api/info               our numbers; what this console can do here
GET  /console/api/conversations      the conversations among the newest messages
GET  /console/api/history            ?ours=&person=[&before=<cursor>]: a page, oldest first
POST /console/api/send               JSON {person, ours?, body, media: [url...]}
GET  /console/api/exchanges          the exchange log, oldest first (dev mode)
GET  /console/api/exchanges/{id}     one exchange with its headers and bodies
GET  /console/api/events             Server-Sent Events: hello, message, exchange, reset
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from adapter.devtools.console.access import console_enabled
from adapter.devtools.console.conversations import conversation_page, recent_conversations
from adapter.devtools.console.sending import TextRefused, parse_person_text, text_as_person
from adapter.devtools.console.state import DEFAULT_PERSON, ConsoleState, console_of
from adapter.twilio.errors import TwilioError
from adapter.web.errors import error_response

HERE = Path(__file__).parent
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # Media URLs are shown as images from anywhere; the page's own URL (which may still
    # carry ?token= when they load) is sent to none of them.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' http: https: data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}
STREAM_RETRY_MS = 500


async def page(request: Request) -> Response:
    html = (HERE / "console.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def page_with_slash(request: Request) -> Response:
    # The page's links are relative to /console; keep the query (it may hold ?token=).
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"../console{query}", status_code=308)


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if not console_enabled(request) or name not in STATIC:
        return Response(status_code=404)
    return Response(
        (HERE / name).read_bytes(),
        media_type=STATIC[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def info(request: Request) -> Response:
    console = console_of(request)
    return JSONResponse(
        {
            "dev_mode": console.channel.settings.dev_mode,
            "numbers": console.numbers,
            "default_person": DEFAULT_PERSON,
            "live": console.live,
            "exchange_log": console.exchanges is not None,
        }
    )


async def conversations(request: Request) -> Response:
    try:
        rows = await recent_conversations(console_of(request).history)
    except TwilioError as error:
        return error_response(502, f"cannot list messages: {error}")
    return JSONResponse({"conversations": rows})


async def history(request: Request) -> Response:
    console = console_of(request)
    params = request.query_params
    ours = params.get("ours") or (console.numbers[0] if console.numbers else "")
    try:
        messages, older = await conversation_page(
            console.history, ours, params.get("person", ""), before=params.get("before")
        )
    except ValueError as error:
        return error_response(400, str(error))
    except TwilioError as error:
        return error_response(502, f"cannot load the history: {error}")
    return JSONResponse({"ours": ours, "messages": messages, "before": older})


async def send(request: Request) -> Response:
    # JSON only: a form posted by another site's page cannot reach here without the
    # browser first asking (CORS preflight), which this endpoint never grants.
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return error_response(415, "expected application/json")
    console = console_of(request)
    try:
        text = parse_person_text(json.loads(await request.body()))
        answer = await text_as_person(console.channel.settings.twilio_base_url, text)
    except (ValueError, RecursionError):
        return error_response(400, "expected a JSON body")
    except TextRefused as refused_text:
        return error_response(refused_text.status, refused_text.reason)
    return JSONResponse(answer, status_code=202)


async def exchanges(request: Request) -> Response:
    log = console_of(request).exchanges
    entries = log.entries() if log is not None else []
    return JSONResponse({"available": log is not None, "exchanges": [e.summary() for e in entries]})


async def exchange(request: Request) -> Response:
    log = console_of(request).exchanges
    raw_id = request.path_params["exchange_id"]
    found = (
        log.get(int(raw_id))
        if log is not None and raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 19
        else None
    )
    if found is None:
        return error_response(404, "no such exchange (the log keeps only the newest ones)")
    return JSONResponse(found.to_json())


async def events(request: Request) -> Response:
    console = console_of(request)
    resume_from = console.feed.seq_of(request.headers.get("last-event-id"))
    return StreamingResponse(
        _stream(console, resume_from),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(console: ConsoleState, resume_from: int | None) -> AsyncIterator[str]:
    feed = console.feed
    yield f"retry: {STREAM_RETRY_MS}\n\n"
    if resume_from is None:
        # A new page, or one whose server restarted: it loads everything on `hello`.
        seq = feed.last_seq
        hello = {"epoch": feed.epoch, "live": console.live}
        yield _sse("hello", hello, feed.event_id(seq))
    else:
        seq = resume_from
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + console.stream_seconds
    while (left := ends_at - loop.time()) > 0:
        catchup = await feed.wait(seq, min(console.heartbeat_seconds, left))
        if catchup.gap:
            seq = catchup.last_seq
            yield _sse("reset", {}, feed.event_id(seq))
            continue
        for event in catchup.events:
            seq = event.seq
            yield _sse(event.kind, event.data, feed.event_id(event.seq))
        if not catchup.events:
            yield ": keep-alive\n\n"


def _sse(kind: str, data: dict[str, Any], event_id: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def routes() -> list[BaseRoute]:
    return [
        Route("/console", page, methods=["GET"]),
        Route("/console/", page_with_slash, methods=["GET"]),
        Route("/console/api/info", info, methods=["GET"]),
        Route("/console/api/conversations", conversations, methods=["GET"]),
        Route("/console/api/history", history, methods=["GET"]),
        Route("/console/api/send", send, methods=["POST"]),
        Route("/console/api/exchanges", exchanges, methods=["GET"]),
        Route("/console/api/exchanges/{exchange_id}", exchange, methods=["GET"]),
        Route("/console/api/events", events, methods=["GET"]),
        Route("/console/{name}", static_file, methods=["GET"]),
    ]
