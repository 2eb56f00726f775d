"""The connection pool under our httpx client for Twilio's REST API: aiohttp's.

Why not httpx's own (httpcore): it spends about 1.4 ms of CPU on each request here, most
of it checking every pooled connection for expiry on every request (O(pool size), with a
`getpeername` per connection) and in its pure-Python HTTP parser. aiohttp's pool and C
parser do the same request in about a quarter of that
(`benchmarks/PROFILE.md`). Callers keep httpx's API: `TwilioClient` builds requests and
reads responses with httpx as before, and tests still lend it an `httpx.MockTransport`.

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
from collections.abc import Iterator
from contextlib import contextmanager
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
        session = self._open_session()
        body = await request.aread()
        with _as_httpx_errors(request):
            async with session.request(
                request.method,
                str(request.url),
                headers=[(name, value) for name, value in request.headers.multi_items()],
                data=body or None,
                allow_redirects=False,
                timeout=_timeout(request),
                proxy=self._proxy_for(request.url),
            ) as answer:
                content = await answer.read()
                headers = [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in answer.raw_headers
                    # The body is decoded already: its encoding and length no longer apply
                    # (httpx sets the length of `content` itself).
                    if name.lower() not in _FRAMING_HEADERS
                ]
                return httpx.Response(
                    answer.status,
                    headers=headers,
                    content=content,
                    request=request,
                    extensions={
                        "http_version": b"HTTP/1.1",
                        "reason_phrase": (answer.reason or "").encode("latin-1"),
                    },
                )

    def _proxy_for(self, url: httpx.URL) -> str | None:
        """HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY, as httpx reads them."""
        if not self._trust_env:
            return None
        origin = (url.scheme, url.host)
        if origin not in self._proxies:
            proxies = urllib.request.getproxies_environment()
            proxy = proxies.get(url.scheme) or proxies.get("all")
            # Not in typeshed, but public and documented since Python 3.3.
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if proxy and bypass(url.host, proxies):
                proxy = None
            self._proxies[origin] = proxy or None
        return self._proxies[origin]

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts, as aiohttp names them."""
    timeouts = request.extensions.get("timeout", {})
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


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Re-raise aiohttp's failures as the httpx ones that say whether the request left."""
    try:
        yield
    except httpx.HTTPError:
        raise
    except aiohttp.ClientHttpProxyError as error:  # the proxy refused the tunnel
        raise httpx.ProxyError(_describe(error), request=request) from error
    except aiohttp.ConnectionTimeoutError as error:  # no connection within the time
        raise httpx.ConnectTimeout(_describe(error), request=request) from error
    except aiohttp.ClientConnectorError as error:  # DNS, refused, TLS, proxy connect
        raise httpx.ConnectError(_describe(error), request=request) from error
    except (aiohttp.InvalidUrlClientError, aiohttp.NonHttpUrlClientError) as error:
        raise httpx.UnsupportedProtocol(_describe(error), request=request) from error
    # From here on the request may have reached Twilio.
    except (TimeoutError, aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError) as error:
        raise httpx.ReadTimeout(_describe(error), request=request) from error
    except aiohttp.ServerDisconnectedError as error:
        raise httpx.RemoteProtocolError(_describe(error), request=request) from error
    except aiohttp.ClientResponseError as error:  # an answer that is not HTTP
        raise httpx.RemoteProtocolError(_describe(error), request=request) from error
    except (aiohttp.ClientError, OSError) as error:  # reset, payload cut short, ...
        raise httpx.ReadError(_describe(error), request=request) from error


def _describe(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__
