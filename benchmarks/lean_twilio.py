"""A lean emulated Twilio for the throughput benchmarks: Send Message and status callbacks,
as little else as possible, in its own process.

    python -m benchmarks.lean_twilio --port 8001   (reads TWILIO_ACCOUNT_SID/TOKEN)

Why not the built-in emulator (benchmarks/recording_twilio.py): on a 2-core machine it
cannot take 1,000 Send Message requests a second itself (Starlette routing, its state,
httpx for callbacks), and with callbacks on it takes most of a core, so the benchmarks
measured the emulator as much as the adapter. This one is a bare asyncio protocol over
httptools' C parser (on uvloop when installed): each request is parsed and answered in
one synchronous callback, with no ASGI, no routing and no task per request.

What it answers, as Twilio does:
- POST /2010-04-01/Accounts/{AccountSid}/Messages.json (form): 201 and a Message resource
  (a unique SM/MM sid, status queued, or accepted for a Messaging Service without From;
  the fields the built-in emulator shows for a plain send); 401 (20003) without the
  account's Basic auth; 404 (20404) for another account or path; 405 (20004) for another
  method; 400 in Twilio's error shape for a form without To (21604), without From or
  MessagingServiceSid (21603), or without Body or MediaUrl (21602).
- Status callbacks, when on and the send named a StatusCallback: queued, sent, delivered
  (after accepted for a Messaging Service), each posted once the previous one was
  answered, with the built-in emulator's form fields (adapter/devtools/emulator/
  callbacks.py) and an X-Twilio-Signature computed as Twilio does
  (adapter.twilio.signature), from a keep-alive pool of at most 16 connections (aiohttp),
  in background tasks. Like Twilio, a failed callback is dropped, never retried.

And the /_bench API of recording_twilio.py, so the scripts can use either:
GET /_bench/count: how many Send Message requests arrived (answered 201) so far;
GET /_bench/arrivals?prefix=P: {body: arrival time (time.time())} for every send whose
Body starts with P; POST /_bench/callbacks?on=1 (or 0): status callbacks on or off.
BENCH_STATUS_CALLBACKS=0 starts it with callbacks off. Its own addition:
GET /_bench/callbacks: {"answered": {URL: {HTTP status: count}}, "failed": {URL: count}}
of the status callbacks posted so far (a server refusing their signatures answers 403).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import gc
import hmac
import json
import os
import signal
import time
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import parse_qs, parse_qsl, urlencode

import aiohttp
import httptools

from adapter.segments import count_segments
from adapter.twilio.signature import SIGNATURE_HEADER, compute_signature

API_VERSION = "2010-04-01"
# The built-in emulator posts at most 16 callbacks at once (emulator/state.py).
CALLBACK_CONNECTIONS = 16
CALLBACK_TIMEOUT_SECONDS = 15.0  # Twilio gives up on a callback after 15 s
CALLBACK_KEEPALIVE_SECONDS = 4.0
DEFAULT_NUMBER = "+15005550006"


class LeanTwilio:
    """The account: its credentials, the sends noted for the /_bench API, the callbacks."""

    def __init__(self, account_sid: str, auth_token: str, number: str, callbacks: bool) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.number = number
        self.callbacks = callbacks
        self.messages_path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        self.sends = 0
        self.arrivals: dict[str, float] = {}
        # Unique SIDs without a random draw each: a random half, then a counter.
        self._sid_prefix = os.urandom(8).hex()
        self._sid_counter = 0
        self._date_second = -1
        self._date = ""
        # Status callbacks answered, by URL and HTTP status, and those that failed to post,
        # by URL: a benchmark can check each server took its own (a bad signature: 403).
        self.callback_answers: dict[str, dict[int, int]] = {}
        self.callback_failures: dict[str, int] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- requests ---------------------------------------------------------------------

    def handle(self, method: bytes, target: bytes, authorization: bytes, body: bytes) -> Answer:
        path, _, query = target.decode("latin-1").partition("?")
        if path.startswith("/_bench/"):
            return self.bench(method, path, query)
        if not path.startswith(f"/{API_VERSION}/"):
            return _error(404, 20404, f"The requested resource {path} was not found")
        if not self._authenticated(authorization):
            return _error(
                401, 20003, "Authenticate", b'WWW-Authenticate: Basic realm="Twilio API"\r\n'
            )
        if path != self.messages_path:
            return _error(404, 20404, f"The requested resource {path} was not found")
        if method != b"POST":
            return _error(405, 20004, "Method not allowed", b"Allow: GET, HEAD, POST\r\n")
        return self.send_message(body)

    def send_message(self, body: bytes) -> Answer:
        arrived = time.time()
        try:
            form = parse_qsl(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            return _error(400, 20001, "The form is not UTF-8")
        fields: dict[str, str] = {}
        media_urls: list[str] = []
        for name, value in form:
            if name == "MediaUrl":
                if value:
                    media_urls.append(value)
            else:
                fields.setdefault(name, value)
        to = fields.get("To", "").strip()
        from_ = fields.get("From", "").strip() or None
        service = fields.get("MessagingServiceSid", "").strip() or None
        text = fields.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if from_ is None and service is None:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not text and not media_urls:
            return _error(400, 21602, "Message body is required.")

        self.sends += 1
        self.arrivals.setdefault(text, arrived)
        self._sid_counter += 1
        sid = f"{'MM' if media_urls else 'SM'}{self._sid_prefix}{self._sid_counter:016x}"
        status = "queued" if from_ is not None else "accepted"
        now = self._rfc2822(arrived)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        resource = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": text,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            # Twilio sends counts as strings.
            "num_media": str(len(media_urls)),
            "num_segments": str(count_segments(text)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {
                "media": f"{uri}/Media.json",
                "feedback": f"{uri}/Feedback.json",
            },
            "to": to,
            "uri": f"{uri}.json",
        }
        callback = fields.get("StatusCallback", "").strip()
        if callback and self.callbacks:
            task = asyncio.get_running_loop().create_task(
                self._post_statuses(callback, sid, to, from_, service)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Answer(201, json.dumps(resource).encode())

    def bench(self, method: bytes, path: str, query: str) -> Answer:
        params = {name: values[-1] for name, values in parse_qs(query).items()}
        if path == "/_bench/count":
            return Answer(200, str(self.sends).encode())
        if path == "/_bench/callbacks" and method == b"POST":
            self.callbacks = params.get("on") == "1"
            return Answer(200, b"true" if self.callbacks else b"false")
        if path == "/_bench/callbacks":
            tally = {"answered": self.callback_answers, "failed": self.callback_failures}
            return Answer(200, json.dumps(tally).encode())
        if path == "/_bench/arrivals":
            prefix = params.get("prefix", "")
            chosen = {body: at for body, at in self.arrivals.items() if body.startswith(prefix)}
            return Answer(200, json.dumps(chosen).encode())
        return Answer(404, b'"not found"')

    def _authenticated(self, authorization: bytes) -> bool:
        scheme, _, encoded = authorization.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            username, separator, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            bool(separator)
            and username == self.account_sid
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
        )

    def _rfc2822(self, moment: float) -> str:
        """Twilio's "Thu, 30 Jul 2015 20:12:31 +0000", formatted once a second."""
        second = int(moment)
        if second != self._date_second:
            self._date_second = second
            self._date = formatdate(second, usegmt=False).replace("-0000", "+0000")
        return self._date

    # -- status callbacks ---------------------------------------------------------------

    async def _post_statuses(
        self, url: str, sid: str, to: str, from_: str | None, service: str | None
    ) -> None:
        statuses = ["queued", "sent", "delivered"]
        if from_ is None:
            # A Messaging Service without From: the service picks a sender when queued.
            statuses.insert(0, "accepted")
        for status in statuses:
            sender = from_ if from_ is not None or status == "accepted" else self.number
            form = {
                "SmsSid": sid,
                "SmsStatus": status,
                "MessageStatus": status,
                "To": to,
                "MessageSid": sid,
                "AccountSid": self.account_sid,
                "From": sender or "",
                "ApiVersion": API_VERSION,
            }
            if service is not None:
                form["MessagingServiceSid"] = service
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "TwilioProxy/1.1",
                SIGNATURE_HEADER: compute_signature(self.auth_token, url, list(form.items())),
            }
            try:
                async with self._callback_session().post(
                    url, data=urlencode(form).encode(), headers=headers, allow_redirects=False
                ) as answer:
                    await answer.read()
                answers = self.callback_answers.setdefault(url, {})
                answers[answer.status] = answers.get(answer.status, 0) + 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                # As Twilio: a failed callback is dropped, and the message moves on.
                self.callback_failures[url] = self.callback_failures.get(url, 0) + 1

    def _callback_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # Idle connections are dropped before the adapter's 5 s keep-alive closes
                # them, so a callback never goes out on one the server just closed.
                connector=aiohttp.TCPConnector(
                    limit=CALLBACK_CONNECTIONS, keepalive_timeout=CALLBACK_KEEPALIVE_SECONDS
                ),
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_SECONDS),
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Content-Type"),
            )
        return self._session

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


class Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: bytes = b"") -> None:
        self.status, self.body, self.headers = status, body, headers


REASONS = {
    200: b"OK",
    201: b"Created",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
}


def _error(status: int, code: int, message: str, headers: bytes = b"") -> Answer:
    """Twilio's error answer: {"code", "message", "more_info", "status"}."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Answer(status, json.dumps(body).encode(), headers)


class HttpConnection(asyncio.Protocol):
    """One client connection: HTTP/1.1 keep-alive, requests answered in order as parsed."""

    def __init__(self, twilio: LeanTwilio) -> None:
        self.twilio = twilio
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.authorization = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_error(400, 20001, "Malformed HTTP request"), keep_alive=False)

    # httptools' callbacks, in the order it calls them for each request.
    def on_message_begin(self) -> None:
        self.url, self.authorization, self.body = b"", b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        answer = self.twilio.handle(
            self.parser.get_method(), self.url, self.authorization, b"".join(self.body)
        )
        self._write(answer, keep_alive=self.parser.should_keep_alive())

    def _write(self, answer: Answer, *, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: %d\r\n%s%s\r\n%s"
            % (
                answer.status,
                REASONS.get(answer.status, b"Unknown"),
                len(answer.body),
                answer.headers,
                b"" if keep_alive else b"Connection: close\r\n",
                answer.body,
            )
        )
        if not keep_alive:
            self.transport.close()


async def serve(twilio: LeanTwilio, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpConnection(twilio), host, port, backlog=1024)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    # Little is allocated per request, and nothing at start needs collecting again.
    gc.freeze()
    try:
        await stopping.wait()
    finally:
        server.close()
        await twilio.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--number", default=DEFAULT_NUMBER, help="the account's number")
    args = parser.parse_args()
    twilio = LeanTwilio(
        os.environ["TWILIO_ACCOUNT_SID"],
        os.environ["TWILIO_AUTH_TOKEN"],
        args.number,
        callbacks=os.environ.get("BENCH_STATUS_CALLBACKS", "1") == "1",
    )
    loop_factory: Any = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(twilio, args.host, args.port))


if __name__ == "__main__":
    main()
