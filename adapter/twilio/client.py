"""Twilio's REST API for messages: send one, fetch one, list them, over one httpx client.

Every failure surfaces as an `adapter.twilio.errors.TwilioError` naming the operation
("send", "get" or "list"); callers never see httpx exceptions.

    async with TwilioClient(Credentials(sid, sid, token)) as twilio:
        sent = await twilio.send_message(to="+15558675310", from_="+15017122661", body="hi")
        async for message in twilio.list_messages(to="+15558675310"):
            ...
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx

from adapter.twilio.errors import (
    TwilioTransportError,
    error_from_response,
    error_from_transport,
)
from adapter.twilio.resources import MessageResource
from adapter.twilio.send_options import SendOptions
from adapter.twilio.transport import AiohttpTransport, client_timeout

API_VERSION: Final = "2010-04-01"
MAX_PAGE_SIZE: Final = 1000


def _user_agent() -> str:
    try:
        ours = version("sms-adapter")
    except PackageNotFoundError:
        ours = "0+unknown"
    return f"sms-adapter/{ours} httpx/{httpx.__version__}"


USER_AGENT: Final = _user_agent()


# The longest a request to Twilio may take: the client's timeout, and how long the fleet
# waits past a silent replica's lease before taking over its sends (see PostgresStore).
REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class PageRequest:
    """One page of List Messages to fetch: the first (the filters) or a later one (the
    `next_page_uri` Twilio gave). Fetching it twice asks for the same page, so a caller
    can retry a page that failed without starting the list over."""

    url: str
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class Credentials:
    """Who we are to Twilio: the account, and the pair for HTTP Basic auth."""

    account_sid: str
    username: str  # the account SID, or an API key SID (SK...)
    password: str = field(repr=False)  # the auth token or the API key secret


class TwilioClient:
    """An async client for the Messages resource of Twilio's 2010-04-01 REST API."""

    def __init__(
        self,
        credentials: Credentials,
        base_url: str = "https://api.twilio.com",
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        """`http` shares a client (and its connection pool, or a test transport).

        `timeout` applies to every request, whether or not `http` is given.
        """
        self._credentials = credentials
        self._base_url = base_url.rstrip("/")
        # Our own pool is called directly (`_exchange`): httpx's client layers (merging,
        # auth flow, redirects, cookies) and its Request and Response objects cost as much
        # CPU per request as the pool itself, and we use none of them. A lent client
        # (tests, callers sharing a pool) is called through httpx; it is not ours to close.
        self._own_pool = AiohttpTransport() if http is None else None
        self._lent = http
        self._timeouts = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._pool_timeout = client_timeout(self._timeouts["timeout"])
        self._send_url = self._messages_url()
        token = _basic_token(credentials)
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Authorization": f"Basic {token}",
        }
        self._form_headers = self._headers | {"Content-Type": FORM_CONTENT_TYPE}
        # The password, and the Authorization header that encodes it, are masked
        # wherever an error might quote text that came back from the server.
        self._secrets = (credentials.password, token)

    async def aclose(self) -> None:
        """Close the connection pool, unless it was lent to us through `http`."""
        if self._own_pool is not None:
            await self._own_pool.aclose()

    async def __aenter__(self) -> TwilioClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def send_message(
        self,
        *,
        to: str,
        body: str,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        media_urls: Sequence[str] = (),
        status_callback: str | None = None,
        application_sid: str | None = None,
        options: SendOptions | None = None,
        remaining_validity: int | None = None,
    ) -> MessageResource:
        """Create a Message. Twilio queues it (or schedules it) and answers with its SID.

        Give `from_`, `messaging_service_sid` or both (a specific sender of the service).
        `application_sid` (a TwiML App, AP...) has Twilio post statuses to the App's
        status callback URL; Twilio ignores it when `status_callback` is also given.
        `remaining_validity` overrides the options' validity period (what is left of it).
        """
        if from_ is None and messaging_service_sid is None:
            raise ValueError("send_message needs from_ or messaging_service_sid")
        form: dict[str, str | list[str]] = {"To": to}
        if from_ is not None:
            form["From"] = from_
        if messaging_service_sid is not None:
            form["MessagingServiceSid"] = messaging_service_sid
        form["Body"] = body
        if media_urls:
            form["MediaUrl"] = list(media_urls)  # httpx repeats the field once per URL
        if status_callback is not None:
            form["StatusCallback"] = status_callback
        if application_sid is not None:
            form["ApplicationSid"] = application_sid
        if options is not None:
            form.update(options.form(remaining_validity=remaining_validity))
        payload = await self._request("send", "POST", self._send_url, data=form)
        return self._message(payload, "send")

    async def cancel_message(self, sid: str) -> MessageResource:
        """Cancel a scheduled Message (Update Message with Status=canceled). Twilio refuses
        with an error once the message is no longer scheduled."""
        url = self._account_url(f"/Messages/{quote(sid, safe='')}.json")
        payload = await self._request("cancel", "POST", url, data={"Status": "canceled"})
        return self._message(payload, "cancel")

    async def get_message(self, sid: str) -> MessageResource:
        """Fetch one Message by its SID (SM... or MM...)."""
        url = self._account_url(f"/Messages/{quote(sid, safe='')}.json")
        payload = await self._request("get", "GET", url)
        return self._message(payload, "get")

    def list_messages(
        self,
        *,
        to: str | None = None,
        from_: str | None = None,
        date_sent: date | None = None,
        date_sent_before: date | None = None,
        date_sent_after: date | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[MessageResource]:
        """Every Message matching the filters, newest first, fetching pages as needed.

        Twilio's `DateSent<` and `DateSent>` include the given day itself.
        """
        params = _list_params(to, from_, date_sent, date_sent_before, date_sent_after, page_size)
        return _flatten(self._pages(params))

    def list_pages(
        self,
        *,
        to: str | None = None,
        from_: str | None = None,
        date_sent: date | None = None,
        date_sent_before: date | None = None,
        date_sent_after: date | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncGenerator[list[MessageResource], None]:
        """Like `list_messages`, one page (one request) at a time, for progress reports
        and for callers that pace each request. Close it (`aclose`) if you stop early."""
        params = _list_params(to, from_, date_sent, date_sent_before, date_sent_after, page_size)
        return self._pages(params)

    def first_page(
        self,
        *,
        to: str | None = None,
        from_: str | None = None,
        date_sent_after: date | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> PageRequest:
        """The first page of a list, for callers that fetch (and retry) page by page."""
        params = _list_params(to, from_, None, None, date_sent_after, page_size)
        return PageRequest(self._messages_url(), params)

    async def list_page(
        self, page: PageRequest
    ) -> tuple[list[MessageResource], PageRequest | None]:
        """One page (one request), and the page after it (None: this was the last)."""
        payload = await self._request("list", "GET", page.url, params=page.params)
        records = payload.get("messages")
        messages = [self._message(record, "list") for record in _list_of_dicts(records)]
        next_page_uri = payload.get("next_page_uri")
        if not isinstance(next_page_uri, str) or not next_page_uri:
            return messages, None
        # next_page_uri already carries the filters and Twilio's page token. Only
        # its path and query are used, so credentials never leave our base URL.
        return messages, PageRequest(
            self._base_url + httpx.URL(next_page_uri).raw_path.decode("ascii")
        )

    async def _pages(self, params: dict[str, str]) -> AsyncGenerator[list[MessageResource], None]:
        page: PageRequest | None = PageRequest(self._messages_url(), params)
        while page is not None:
            messages, page = await self.list_page(page)
            yield messages

    def _account_url(self, path: str) -> str:
        account = quote(self._credentials.account_sid, safe="")
        return f"{self._base_url}/{API_VERSION}/Accounts/{account}{path}"

    def _messages_url(self) -> str:
        return self._account_url("/Messages.json")

    async def _request(
        self,
        operation: str,
        method: str,
        url: str | httpx.URL,
        *,
        data: dict[str, str | list[str]] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One call, its answer as a JSON object; every failure as a TwilioError. Also
        how `account.AccountClient` reads the account's other resources."""
        if self._lent is None:
            return await self._exchange(operation, method, _with_query(str(url), params), data)
        request = httpx.Request(
            method, url, data=data, params=params, headers=self._headers, extensions=self._timeouts
        )
        try:
            response = await self._lent.send(request, follow_redirects=False)
            await response.aread()
        except httpx.RequestError as error:
            raise error_from_transport(error, operation, secrets=self._secrets) from error
        if not response.is_success:
            raise error_from_response(response, operation, secrets=self._secrets)
        return self._json_object(response.status_code, response.content, operation)

    async def _exchange(
        self,
        operation: str,
        method: str,
        url: str,
        data: dict[str, str | list[str]] | None,
    ) -> dict[str, Any]:
        """`_request` on our own pool, building no httpx Request or Response unless
        Twilio refuses (transport.py says why)."""
        assert self._own_pool is not None
        headers = self._headers if data is None else self._form_headers
        body = None if data is None else form_body(data)
        try:
            answer = await self._own_pool.exchange(method, url, headers, body, self._pool_timeout)
        except httpx.RequestError as error:
            raise error_from_transport(error, operation, secrets=self._secrets) from error
        if not answer.is_success:
            request = httpx.Request(method, url, content=body, headers=headers)
            response = answer.as_httpx(request)
            raise error_from_response(response, operation, secrets=self._secrets)
        return self._json_object(answer.status, answer.content, operation)

    def _json_object(self, status: int, content: bytes, operation: str) -> dict[str, Any]:
        try:
            payload = json.loads(content)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            # Twilio acted (2xx) but we cannot read what it did: the same uncertainty
            # as a dropped connection, so the same answer.
            raise TwilioTransportError(
                operation=operation,
                detail=f"HTTP {status} with a body that is not a JSON object",
                ambiguous=True,
            )
        return payload

    def _message(self, record: dict[str, Any], operation: str) -> MessageResource:
        try:
            return MessageResource.from_json(record)
        except ValueError as error:
            raise TwilioTransportError(
                operation=operation, detail=f"unusable Message: {error}", ambiguous=True
            ) from error


def _list_params(
    to: str | None,
    from_: str | None,
    date_sent: date | None,
    date_sent_before: date | None,
    date_sent_after: date | None,
    page_size: int,
) -> dict[str, str]:
    # Checked before any generator starts, so a bad call fails where it is made.
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    filters = {
        "To": to,
        "From": from_,
        "DateSent": _day(date_sent),
        "DateSent<": _day(date_sent_before),
        "DateSent>": _day(date_sent_after),
    }
    params = {name: value for name, value in filters.items() if value is not None}
    params["PageSize"] = str(page_size)
    return params


async def _flatten(
    pages: AsyncGenerator[list[MessageResource], None],
) -> AsyncGenerator[MessageResource, None]:
    # Closing the flattened iterator early closes the page generator too, at once.
    async with aclosing(pages):
        async for page in pages:
            for message in page:
                yield message


def _basic_token(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return base64.b64encode(pair).decode("ascii")


def _day(value: date | None) -> str | None:
    # Twilio filters by whole GMT days; an aware datetime is first moved to GMT.
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d") if value is not None else None


def _list_of_dicts(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"


def _with_query(url: str, params: dict[str, str] | None) -> str:
    """`url` with `params` added to its query, encoded as httpx encodes `params=`."""
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def form_body(data: dict[str, str | list[str]]) -> bytes:
    """The body httpx sends for `data=`: a list repeats its field once per item."""
    pairs = [
        (name, item)
        for name, value in data.items()
        for item in (value if isinstance(value, list) else (value,))
    ]
    return urlencode(pairs).encode("utf-8")
