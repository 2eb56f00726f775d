"""Every webhook and REST call of the dev app, like Twilio's debugger shows them.

`ExchangeLogMiddleware` wraps the dev app (adapter and emulator on one port, so both
sides of every exchange pass through it) and records the requests to the paths Twilio and
the adapter talk on: the messaging webhook, the status callback, and Twilio's REST API.
Each record keeps the method, path, status, duration, headers and both bodies, capped;
the newest `capacity` records are kept.

Nothing secret is kept: Authorization headers are replaced by their scheme, and every
configured secret (the auth token, also URL-encoded or inside a Basic header) is cut out
of whatever else is kept.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.logs import REDACTED, Redactor

DEFAULT_CAPACITY = 500
DEFAULT_BODY_LIMIT = 8 * 1024

WEBHOOK_PATHS = {"/api/sms": "webhook", "/api/sms/status": "status callback"}
REST_PREFIX = "/2010-04-01/"


def kind_of(path: str) -> str | None:
    """What a request to `path` is, or None when the log does not keep it."""
    if path in WEBHOOK_PATHS:
        return WEBHOOK_PATHS[path]
    if path.startswith(REST_PREFIX):
        return "REST"
    return None


def signature_result(kind: str, status: int, checked: bool) -> str | None:
    """How the signature check went, read from the answer: the webhooks answer 403 only
    to a bad signature, and reach a 2xx only past a good one."""
    if kind == "REST":
        return None
    if not checked:
        return "not checked"
    if status == 403:
        return "rejected"
    if 200 <= status < 300:
        return "valid"
    return "unknown"


@dataclass
class Exchange:
    id: int
    at: datetime
    kind: str
    method: str
    path: str
    query: str
    request_headers: list[tuple[str, str]]
    request_body: str
    status: int | None = None
    duration_ms: float | None = None
    signature: str | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "signature": self.signature,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "query": self.query,
            "request": {"headers": self.request_headers, "body": self.request_body},
            "response": {"headers": self.response_headers, "body": self.response_body},
        }


class ExchangeLog:
    """The newest `capacity` exchanges, oldest first, with secrets cut out."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        capacity: int = DEFAULT_CAPACITY,
        body_limit: int = DEFAULT_BODY_LIMIT,
        signatures_checked: bool = True,
        on_record: Callable[[Exchange], None] | None = None,
    ) -> None:
        # Longest first, so a secret containing another is cut out whole.
        self._redactor = Redactor(sorted(secrets, key=len, reverse=True))
        self._entries: deque[Exchange] = deque(maxlen=capacity)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.body_limit = body_limit
        self.signatures_checked = signatures_checked
        self.on_record = on_record

    def clean(self, text: str) -> str:
        return self._redactor.clean(text)

    def body_text(self, body: bytes) -> str:
        shown = body[: self.body_limit].decode("utf-8", errors="replace")
        if len(body) > self.body_limit:
            shown += f"\n… ({len(body) - self.body_limit} more bytes not kept)"
        return self.clean(shown)

    def headers(self, raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        kept = []
        for name_bytes, value_bytes in raw:
            name = name_bytes.decode("latin-1").lower()
            value = value_bytes.decode("latin-1")
            if name in {"authorization", "proxy-authorization", "cookie", "set-cookie"}:
                scheme = value.split(" ", 1)[0] if " " in value else ""
                value = f"{scheme} {REDACTED}".strip()
            kept.append((name, self.clean(value)))
        return kept

    def start(self, scope: Scope, kind: str) -> Exchange:
        return Exchange(
            id=next(self._ids),
            at=datetime.now(UTC),
            kind=kind,
            method=scope["method"],
            path=scope["path"],
            query=self.clean(scope.get("query_string", b"").decode("latin-1")),
            request_headers=self.headers(scope.get("headers", [])),
            request_body="",
        )

    def finish(
        self,
        exchange: Exchange,
        request_body: bytes,
        status: int,
        response_headers: Iterable[tuple[bytes, bytes]],
        response_body: bytes,
        seconds: float,
    ) -> None:
        exchange.request_body = self.body_text(request_body)
        exchange.status = status
        exchange.duration_ms = round(seconds * 1000, 1)
        exchange.signature = signature_result(exchange.kind, status, self.signatures_checked)
        exchange.response_headers = self.headers(response_headers)
        exchange.response_body = self.body_text(response_body)
        with self._lock:
            self._entries.append(exchange)
        if self.on_record is not None:
            self.on_record(exchange)

    def entries(self) -> list[Exchange]:
        with self._lock:
            return list(self._entries)

    def get(self, exchange_id: int) -> Exchange | None:
        with self._lock:
            return next((e for e in self._entries if e.id == exchange_id), None)


class ExchangeLogMiddleware:
    """Records the exchanges `kind_of` names into `log`; passes everything else through
    untouched. Bodies are copied as they stream by, never held back."""

    def __init__(self, app: ASGIApp, log: ExchangeLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = kind_of(scope["path"]) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        exchange = self.log.start(scope, kind)
        started = time.perf_counter()
        request_body = bytearray()
        response_body = bytearray()
        response: dict[str, Any] = {"status": 500, "headers": []}
        limit = self.log.body_limit + 1  # one byte more tells the log it was cut

        async def receive_copy() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(request_body) < limit:
                request_body.extend(message.get("body", b"")[: limit - len(request_body)])
            return message

        # A closure over `send` (not an object holding it): the emulator's `drop` fault
        # finds uvicorn's connection by following closure cells.
        async def send_copy(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body" and len(response_body) < limit:
                response_body.extend(message.get("body", b"")[: limit - len(response_body)])
            await send(message)

        try:
            await self.app(scope, receive_copy, send_copy)
        finally:
            self.log.finish(
                exchange,
                bytes(request_body),
                int(response["status"]),
                response["headers"],
                bytes(response_body),
                time.perf_counter() - started,
            )
