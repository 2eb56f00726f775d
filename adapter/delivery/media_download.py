"""Downloading the media of a text (MMS, WhatsApp) for a bot: `await ctx.download(...)`.

A MediaUrl Twilio posts points at its API (api.twilio.com/2010-04-01/Accounts/.../Media/
ME...). When the account requires HTTP auth for media, that URL wants the account's
credentials, and it answers with a redirect to a signed, short-lived URL on Twilio's CDN
(*.twiliocdn.com, or the Amazon S3 bucket behind it) that needs none.

So the account's credentials go only to Twilio's API and media hosts over https
(api.twilio.com, *.twilio.com, media.twiliocdn.com) and to the configured API base URL
(the emulator in development), never anywhere else. A download starts only at such a
URL or on Twilio's CDN, and redirects are followed one at a time, only to those same
places; a request to the CDN goes without credentials. The size is capped: a declared length over
the cap is refused before reading, and a stream is cut as soon as it passes the cap.

    MediaDownloadError
     ├── MediaUrlNotAllowed   the URL, or a redirect, leads away from Twilio's media hosts
     ├── MediaTooLarge        more bytes than max_bytes
     └── MediaUnavailable     an HTTP error status, a network error, too many redirects

Error messages show URLs without their query string, which on the CDN holds a signature.
"""

from __future__ import annotations

import asyncio
import re

import httpx

from adapter.bot.media import (
    MediaFile,
    MediaTooLarge,
    MediaUnavailable,
    MediaUrlNotAllowed,
)
from adapter.twilio.client import USER_AGENT, Credentials

# WhatsApp media go up to 16 MB; MMS stay under 5 MB.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
MAX_REDIRECTS = 5
# The whole download, redirects included: a server dripping bytes cannot hold a bot forever.
DEFAULT_TIMEOUT_SECONDS = 60.0

_CREDENTIALED_HOSTS = frozenset({"api.twilio.com", "media.twiliocdn.com"})
_CREDENTIALED_SUFFIX = ".twilio.com"
_CDN_SUFFIX = ".twiliocdn.com"
# Twilio's media bucket on S3, path-style (s3-external-1.amazonaws.com/media.twiliocdn.com/...)
# or virtual-hosted (media.twiliocdn.com.s3.amazonaws.com/...). Any other bucket on S3
# could be anyone's, so only this one is followed.
_S3_HOST = re.compile(r"s3([.-][a-z0-9-]+)?\.amazonaws\.com")
_TWILIO_BUCKET = "media.twiliocdn.com"


class MediaDownloader:
    """Downloads media with the account's credentials, under the rules above."""

    def __init__(
        self,
        credentials: Credentials,
        api_base_url: str = "https://api.twilio.com",
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """`http` shares a client (a connection pool, or a test transport)."""
        self._auth = httpx.BasicAuth(credentials.username, credentials.password)
        self._api_origin = _origin(httpx.URL(api_base_url))
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._timeout = timeout

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def download(
        self, url: str, content_type: str | None = None, max_bytes: int | None = None
    ) -> MediaFile:
        """The bytes at `url` (a MediaUrl Twilio posted). `content_type` is used when the
        server names none; `max_bytes` defaults to DEFAULT_MAX_BYTES."""
        limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        if limit < 1:
            raise ValueError(f"max_bytes must be at least 1, got {limit}")
        start = _parse(url)
        if not self.may_follow(start):
            raise MediaUrlNotAllowed(
                f"{_shown(start)} is not a Twilio media URL: ctx.download() fetches the media "
                "of texts (MediaUrl on api.twilio.com); fetch other URLs with your own client"
            )
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(start, url, content_type, limit)
        except TimeoutError:
            raise MediaUnavailable(
                f"{_shown(start)}: no complete answer within {self._timeout:g} s"
            ) from None

    def sends_credentials_to(self, url: httpx.URL) -> bool:
        """Whether the account's credentials may go to `url`: Twilio over https, or the
        configured API base."""
        if url.userinfo:
            return False
        if _origin(url) == self._api_origin:
            return True
        host = url.host
        return url.scheme == "https" and (
            host in _CREDENTIALED_HOSTS or host.endswith(_CREDENTIALED_SUFFIX)
        )

    def may_follow(self, url: httpx.URL) -> bool:
        """Whether `url` may be fetched (or a redirect to it followed): the hosts above,
        or Twilio's CDN."""
        return self.sends_credentials_to(url) or _is_twilio_cdn(url)

    async def _follow(
        self, start: httpx.URL, asked: str, content_type: str | None, limit: int
    ) -> MediaFile:
        current = start
        for _ in range(MAX_REDIRECTS + 1):
            auth = self._auth if self.sends_credentials_to(current) else None
            try:
                async with self._http.stream(
                    "GET",
                    current,
                    auth=auth,
                    headers={"User-Agent": USER_AGENT},
                    follow_redirects=False,
                ) as response:
                    if response.is_redirect:
                        current = self._redirect_target(current, response)
                        continue
                    if not response.is_success:
                        raise MediaUnavailable(
                            f"{_shown(current)} answered HTTP {response.status_code}"
                        )
                    content = await _read_capped(response, limit, current)
                    served = response.headers.get("content-type", "").split(";")[0].strip()
            except httpx.HTTPError as error:
                raise MediaUnavailable(
                    f"{_shown(current)}: {type(error).__name__} while downloading"
                ) from None
            return MediaFile(
                content=content,
                content_type=served or content_type or "application/octet-stream",
                url=asked,
            )
        raise MediaUnavailable(f"{_shown(start)}: more than {MAX_REDIRECTS} redirects")

    def _redirect_target(self, current: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise MediaUnavailable(
                f"{_shown(current)} answered HTTP {response.status_code} without a Location"
            )
        try:
            target = current.join(location)
        except httpx.InvalidURL:
            raise MediaUnavailable(f"{_shown(current)} redirected to an invalid URL") from None
        if not self.may_follow(target):
            raise MediaUrlNotAllowed(
                f"{_shown(current)} redirected to {_shown(target)}, which is not one of "
                "Twilio's media hosts: not followed"
            )
        return target


async def _read_capped(response: httpx.Response, limit: int, url: httpx.URL) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and len(declared) < 20 and int(declared) > limit:
        raise MediaTooLarge(f"{_shown(url)} is {int(declared)} bytes; max_bytes is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise MediaTooLarge(f"{_shown(url)} is larger than max_bytes ({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_twilio_cdn(url: httpx.URL) -> bool:
    if url.scheme != "https" or url.userinfo:
        return False
    host = url.host
    if host.endswith(_CDN_SUFFIX):
        return True
    if host.startswith(_TWILIO_BUCKET + "."):
        return _S3_HOST.fullmatch(host.removeprefix(_TWILIO_BUCKET + ".")) is not None
    return _S3_HOST.fullmatch(host) is not None and url.path.startswith(f"/{_TWILIO_BUCKET}/")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise MediaUrlNotAllowed("the media URL is not a valid URL") from None
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise MediaUrlNotAllowed(f"{_shown(parsed)} is not an absolute http(s) URL")
    return parsed


def _shown(url: httpx.URL) -> str:
    """A URL fit for a message: no credentials, no query string (a CDN signature)."""
    if not url.host:
        return repr(url.path)
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"
