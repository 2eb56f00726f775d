"""The connection pool under our httpx client for Twilio's REST API: aiohttp's.

Why not httpx's own (httpcore): it spends about 1.4 ms of CPU on each request here, most
of it checking every pooled connection for expiry on every request (O(pool size), with a
`getpeername` per connection) and in its pure-Python HTTP parser. aiohttp's pool and C
parser do the same request in about a quarter of that
(`benchmarks/PROFILE.md`). Callers keep httpx's API (`handle_async_request`), and tests
still lend `TwilioClient` an `httpx.MockTransport`; only the client's own requests on its
own pool skip building httpx objects (`exchange`), since that was as costly again.

What matters most here is the mapping of failures. The sender decides from the httpx
exception's class whether Twilio may have received a Send Message request
(`adapter.twilio.errors`): a connection that never opened is safe to retry, anything after
the request may have left is not. So each aiohttp failure becomes the httpx failure that
says the same about the request, and anything unknown is reported as "may have been sent".

Responses are read whole before they are handed back: Twilio's answers are small JSON
documents (a page of 1,000 messages is about 1 MB), and reading them here gives the
connection back to the pool at once.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import aiohttp
import httpx

# httpx's default keep-alive expiry: an idle connection older than this is not reused,
# which stays under the idle timeouts of Twilio's and most proxies' load balancers.
KEEPALIVE_SECONDS: Final = 5.0
_FRAMING_HEADERS: Final = frozenset({b"content-encoding", b"transfer-encoding", b"content-length"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests over one aiohttp session (created on first use, in the loop)."""

    def __init__(self, *, max_connections: int = 100, trust_env: bool = True) -> None:
        self._max_connections = max_connections
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        # The proxy for each origin, looked up once: aiohttp's own `trust_env` reads the
        # environment and ~/.netrc again on every request (7% of the adapter's CPU).
        self._proxies: dict[tuple[str, str], str | None] = {}
        # Certificates as httpx finds them (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), so
        # switching pools changes no TLS behaviour.
        self._ssl: ssl.SSLContext = httpx.create_ssl_context(trust_env=trust_env)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            # As httpx's own client says it: a closed client is a bug in the caller.
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # proxies are looked up once per origin instead
                auto_decompress=True,
                # httpx has already set every header the request carries.
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        answer = await self.exchange(
            request.method,
            str(request.url),
            request.headers.multi_items(),
            body,
            client_timeout(request.extensions.get("timeout", {})),
            request_for_errors=lambda: request,
        )
        return answer.as_httpx(request)

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
        body: bytes | None,
        timeout: aiohttp.ClientTimeout,
        *,
        request_for_errors: Callable[[], httpx.Request] | None = None,
    ) -> RawAnswer:
        """One request without httpx's Request and Response objects, which cost as much
        CPU as the request itself: the Send Message path, run for every reply, builds
        neither unless Twilio refuses (`RawAnswer.as_httpx`). Failures are raised as
        httpx's, as from `handle_async_request`."""
        session = self._open_session()

        def failed_request() -> httpx.Request:
            if request_for_errors is not None:
                return request_for_errors()
            return httpx.Request(method, url)

        with _as_httpx_errors(failed_request):
            async with session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                proxy=self._proxy_for(url),
            ) as answer:
                content = await answer.read()
                return RawAnswer(answer.status, answer.reason or "", answer.raw_headers, content)

    def _proxy_for(self, url: str) -> str | None:
        """HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY, as httpx reads them."""
        if not self._trust_env:
            return None
        # Keyed by scheme and authority, cut from the text without parsing the URL.
        scheme, _, rest = url.partition("://")
        origin = (scheme, rest.partition("/")[0])
        if origin not in self._proxies:
            parsed = httpx.URL(url)
            proxies = urllib.request.getproxies_environment()
            proxy = proxies.get(parsed.scheme) or proxies.get("all")
            # Not in typeshed, but public and documented since Python 3.3.
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if proxy and bypass(parsed.host, proxies):
                proxy = None
            self._proxies[origin] = proxy or None
        return self._proxies[origin]

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


def client_timeout(timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts (`httpx.Timeout.as_dict()`), as aiohttp names them."""
    pool, connect, read = timeouts.get("pool"), timeouts.get("connect"), timeouts.get("read")
    parts = [timeouts.get(name) for name in ("pool", "connect", "write", "read")]
    return aiohttp.ClientTimeout(
        # aiohttp has no write timeout: a request whose upload stalls ends by this total.
        total=None if None in parts else sum(part for part in parts if part is not None),
        # aiohttp's `connect` covers waiting for a free connection and opening one.
        connect=None if pool is None or connect is None else pool + connect,
        sock_connect=connect,
        sock_read=read,
    )


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """Twilio's answer, read whole: the status and body, and the headers as received."""

    status: int
    reason: str
    raw_headers: tuple[tuple[bytes, bytes], ...]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def as_httpx(self, request: httpx.Request) -> httpx.Response:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.raw_headers
            # The body is decoded already: its encoding and length no longer apply
            # (httpx sets the length of `content` itself).
            if name.lower() not in _FRAMING_HEADERS
        ]
        return httpx.Response(
            self.status,
            headers=headers,
            content=self.content,
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": self.reason.encode("latin-1"),
            },
        )


@contextmanager
def _as_httpx_errors(failed_request: Callable[[], httpx.Request]) -> Iterator[None]:
    """Re-raise aiohttp's failures as the httpx ones that say whether the request left
    (`failed_request` builds the request they name, only when one is raised)."""
    try:
        yield
    except httpx.HTTPError:
        raise
    except aiohttp.ClientHttpProxyError as error:  # the proxy refused the tunnel
        raise httpx.ProxyError(_describe(error), request=failed_request()) from error
    except aiohttp.ConnectionTimeoutError as error:  # no connection within the time
        raise httpx.ConnectTimeout(_describe(error), request=failed_request()) from error
    except aiohttp.ClientConnectorError as error:  # DNS, refused, TLS, proxy connect
        raise httpx.ConnectError(_describe(error), request=failed_request()) from error
    except (aiohttp.InvalidUrlClientError, aiohttp.NonHttpUrlClientError) as error:
        raise httpx.UnsupportedProtocol(_describe(error), request=failed_request()) from error
    # From here on the request may have reached Twilio.
    except (TimeoutError, aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError) as error:
        raise httpx.ReadTimeout(_describe(error), request=failed_request()) from error
    except aiohttp.ServerDisconnectedError as error:
        raise httpx.RemoteProtocolError(_describe(error), request=failed_request()) from error
    except aiohttp.ClientResponseError as error:  # an answer that is not HTTP
        raise httpx.RemoteProtocolError(_describe(error), request=failed_request()) from error
    except (aiohttp.ClientError, OSError) as error:  # reset, payload cut short, ...
        raise httpx.ReadError(_describe(error), request=failed_request()) from error


def _describe(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__
