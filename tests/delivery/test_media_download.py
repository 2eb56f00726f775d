"""ctx.download(): the account's credentials go to Twilio only, redirects only to Twilio's
media hosts and CDN (without credentials), and the size is capped.

Twilio is played by httpx.MockTransport: each test lists the answers per URL and then
looks at the requests that were made.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from adapter.activity import Attachment
from adapter.bot.context import Context
from adapter.bot.media import MediaFile, MediaTooLarge, MediaUnavailable, MediaUrlNotAllowed
from adapter.delivery.media_download import MAX_REDIRECTS, MediaDownloader
from adapter.testing import inbound_message
from adapter.twilio.client import Credentials
from adapter.twilio.messages import Media

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "media-test-auth-token"
EMULATOR = "http://127.0.0.1:8001"
MEDIA_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1"
CDN_URL = "https://mms.twiliocdn.com/AC1/abc?Expires=1&Signature=s3cr3t-signature&Key-Pair-Id=K"
S3_URL = "https://s3-external-1.amazonaws.com/media.twiliocdn.com/AC1/abc?X-Amz-Signature=s3cr3t"
JPEG = b"\xff\xd8\xff\xe0" + b"jpeg-bytes" * 10
BASIC = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


@dataclass
class FakeTwilio:
    """Answers per URL (without query string); records each request made."""

    answers: dict[str, httpx.Response | Callable[[httpx.Request], httpx.Response]]
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = str(request.url.copy_with(query=None))
        answer = self.answers.get(key)
        if answer is None:
            return httpx.Response(404)
        return answer(request) if callable(answer) else answer

    def authorization(self) -> list[str | None]:
        return [r.headers.get("authorization") for r in self.requests]

    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]


def redirect(to: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"Location": to})


def jpeg(content: bytes = JPEG, content_type: str = "image/jpeg") -> httpx.Response:
    return httpx.Response(200, content=content, headers={"Content-Type": content_type})


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A body streamed in parts, with no Content-Length."""
    for part in parts:
        yield part


def no_query(url: str) -> str:
    return url.partition("?")[0]


Downloads = Callable[..., tuple[MediaDownloader, FakeTwilio]]


@pytest.fixture
async def downloads() -> AsyncIterator[Downloads]:
    """Makes a downloader over a fake Twilio answering `answers`."""
    made: list[httpx.AsyncClient] = []

    def make(
        answers: dict[str, Any], api_base: str = "https://api.twilio.com"
    ) -> tuple[MediaDownloader, FakeTwilio]:
        twilio = FakeTwilio(answers)
        http = httpx.AsyncClient(transport=httpx.MockTransport(twilio.handle))
        made.append(http)
        credentials = Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN)
        return MediaDownloader(credentials, api_base, http=http), twilio

    yield make
    for http in made:
        await http.aclose()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(MEDIA_URL, id="api.twilio.com"),
        pytest.param("https://media.twiliocdn.com/AC1/ME1", id="media.twiliocdn.com"),
        pytest.param("https://api.us1.twilio.com/2010-04-01/x/Media/ME1", id="any-twilio.com"),
        pytest.param(f"{EMULATOR}/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", id="api-base"),
    ],
)
async def test_credentials_go_to_twilios_media_hosts_and_the_api_base(
    downloads: Downloads, url: str
) -> None:
    downloader, twilio = downloads({no_query(url): jpeg()}, api_base=EMULATOR)

    media = await downloader.download(url)

    assert media == MediaFile(content=JPEG, content_type="image/jpeg", url=url)
    assert twilio.authorization() == [BASIC]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://example.com/cat.jpg", id="another-host"),
        pytest.param("http://api.twilio.com/2010-04-01/Media/ME1", id="twilio-without-tls"),
        pytest.param("https://api.twilio.com.example.com/Media/ME1", id="lookalike-suffix"),
        pytest.param("https://eviltwilio.com/Media/ME1", id="lookalike-no-dot"),
        pytest.param("https://example.com/api.twilio.com/Media/ME1", id="twilio-in-the-path"),
        pytest.param("https://user:pw@api.twilio.com/Media/ME1", id="userinfo"),
        pytest.param("http://127.0.0.1:8002/Media/ME1", id="api-base-host-other-port"),
        pytest.param("https://s3.amazonaws.com/someone-elses-bucket/x", id="other-s3-bucket"),
        pytest.param("ftp://api.twilio.com/Media/ME1", id="not-http"),
        pytest.param("/2010-04-01/Media/ME1", id="relative"),
    ],
)
async def test_other_urls_are_refused_before_any_request(downloads: Downloads, url: str) -> None:
    downloader, twilio = downloads({}, api_base=EMULATOR)

    with pytest.raises(MediaUrlNotAllowed):
        await downloader.download(url)

    assert twilio.requests == []


@pytest.mark.parametrize(
    ("cdn", "status"),
    [
        pytest.param(CDN_URL, 302, id="twiliocdn-302"),
        pytest.param(CDN_URL, 307, id="twiliocdn-307"),
        pytest.param(S3_URL, 301, id="s3-path-style-twilio-bucket"),
        pytest.param(
            "https://media.twiliocdn.com.s3.amazonaws.com/AC1/abc?X-Amz-Signature=s3cr3t",
            303,
            id="s3-virtual-hosted-twilio-bucket",
        ),
    ],
)
async def test_a_redirect_to_twilios_cdn_is_followed_without_credentials(
    downloads: Downloads, cdn: str, status: int
) -> None:
    downloader, twilio = downloads({MEDIA_URL: redirect(cdn, status), no_query(cdn): jpeg()})

    media = await downloader.download(MEDIA_URL)

    assert media.content == JPEG and media.url == MEDIA_URL
    assert twilio.authorization() == [BASIC, None]
    assert str(twilio.requests[1].url) == cdn  # the signed query string travels intact


async def test_a_redirect_within_twilio_keeps_the_credentials(
    downloads: Downloads,
) -> None:
    other = "https://media.twiliocdn.com/AC1/ME1"
    downloader, twilio = downloads(
        {
            MEDIA_URL: redirect("/2010-04-01/elsewhere"),
            "https://api.twilio.com/2010-04-01/elsewhere": redirect(other),
            other: jpeg(),
        }
    )

    await downloader.download(MEDIA_URL)

    assert twilio.authorization() == [BASIC, BASIC, BASIC]
    assert twilio.hosts() == ["api.twilio.com", "api.twilio.com", "media.twiliocdn.com"]


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("https://example.com/stolen", id="another-host"),
        pytest.param("http://mms.twiliocdn.com/AC1/abc", id="cdn-without-tls"),
        pytest.param("https://s3.amazonaws.com/another-bucket/x", id="another-s3-bucket"),
        pytest.param("https://mms.twiliocdn.com.example.com/x", id="lookalike-cdn"),
    ],
)
async def test_a_redirect_elsewhere_is_not_followed(downloads: Downloads, location: str) -> None:
    downloader, twilio = downloads({MEDIA_URL: redirect(location), no_query(location): jpeg()})

    with pytest.raises(MediaUrlNotAllowed, match="not one of Twilio's media hosts"):
        await downloader.download(MEDIA_URL)

    assert twilio.hosts() == ["api.twilio.com"]


async def test_a_redirect_loop_ends_with_a_clear_error(
    downloads: Downloads,
) -> None:
    downloader, twilio = downloads({MEDIA_URL: redirect(MEDIA_URL)})

    with pytest.raises(MediaUnavailable, match=f"more than {MAX_REDIRECTS} redirects"):
        await downloader.download(MEDIA_URL)

    assert len(twilio.requests) == MAX_REDIRECTS + 1


@pytest.mark.parametrize(
    ("answer", "max_bytes"),
    [
        pytest.param(jpeg(b"x" * 101), 100, id="declared-length-over"),
        pytest.param(
            httpx.Response(200, content=chunks(b"x" * 60, b"x" * 60)), 100, id="streamed-over"
        ),
    ],
)
async def test_media_over_the_cap_are_refused(
    downloads: Downloads,
    answer: httpx.Response,
    max_bytes: int,
) -> None:
    downloader, _ = downloads({MEDIA_URL: answer})

    with pytest.raises(MediaTooLarge, match="max_bytes"):
        await downloader.download(MEDIA_URL, max_bytes=max_bytes)


async def test_media_exactly_at_the_cap_arrive(
    downloads: Downloads,
) -> None:
    downloader, _ = downloads(
        {MEDIA_URL: httpx.Response(200, content=chunks(b"x" * 50, b"x" * 50))}
    )

    media = await downloader.download(MEDIA_URL, max_bytes=100)

    assert media.size == 100


@pytest.mark.parametrize(
    ("served", "hint", "expected"),
    [
        pytest.param("image/png; charset=binary", None, "image/png", id="parameters-dropped"),
        pytest.param("", "image/gif", "image/gif", id="hint-when-unnamed"),
        pytest.param("", None, "application/octet-stream", id="unknown"),
    ],
)
async def test_the_content_type_comes_from_the_answer(
    downloads: Downloads,
    served: str,
    hint: str | None,
    expected: str,
) -> None:
    headers = {"Content-Type": served} if served else {}
    downloader, _ = downloads({MEDIA_URL: httpx.Response(200, content=b"x", headers=headers)})

    media = await downloader.download(MEDIA_URL, hint)

    assert media.content_type == expected


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(httpx.Response(404), "answered HTTP 404", id="not-found"),
        pytest.param(httpx.Response(302), "without a Location", id="redirect-nowhere"),
        pytest.param(refuse_connection, "ConnectError", id="network"),
    ],
)
async def test_failures_are_media_unavailable(
    downloads: Downloads,
    answer: Any,
    message: str,
) -> None:
    downloader, _ = downloads({MEDIA_URL: answer})

    with pytest.raises(MediaUnavailable, match=message):
        await downloader.download(MEDIA_URL)


async def test_errors_never_show_secrets_or_signed_query_strings(
    downloads: Downloads,
) -> None:
    downloader, _ = downloads(
        {MEDIA_URL: redirect(CDN_URL), no_query(CDN_URL): httpx.Response(403)}
    )

    with pytest.raises(MediaUnavailable) as raised:
        await downloader.download(MEDIA_URL)

    shown = str(raised.value)
    assert "mms.twiliocdn.com/AC1/abc" in shown
    assert "s3cr3t" not in shown and AUTH_TOKEN not in shown and BASIC not in shown


async def test_max_bytes_must_be_positive(
    downloads: Downloads,
) -> None:
    downloader, twilio = downloads({MEDIA_URL: jpeg()})
    with pytest.raises(ValueError, match="max_bytes"):
        await downloader.download(MEDIA_URL, max_bytes=0)
    assert twilio.requests == []


# -- ctx.download() ------------------------------------------------------------------------


@dataclass
class RecordingDownload:
    calls: list[tuple[str, str | None, int | None]] = field(default_factory=list)

    async def __call__(
        self, url: str, content_type: str | None, max_bytes: int | None
    ) -> MediaFile:
        self.calls.append((url, content_type, max_bytes))
        return MediaFile(content=b"x", content_type=content_type or "?", url=url)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            Attachment(content_type="image/png", content_url=MEDIA_URL),
            (MEDIA_URL, "image/png", 1000),
            id="attachment",
        ),
        pytest.param(
            Media(url=MEDIA_URL, content_type="video/mp4"),
            (MEDIA_URL, "video/mp4", 1000),
            id="media",
        ),
        pytest.param(MEDIA_URL, (MEDIA_URL, None, 1000), id="url"),
    ],
)
async def test_ctx_download_takes_an_attachment_a_media_or_a_url(
    given: Attachment | Media | str, expected: tuple[str, str | None, int]
) -> None:
    download = RecordingDownload()
    ctx = Context(message=inbound_message("look"), bot_name="test", media_download=download)

    await ctx.download(given, max_bytes=1000)

    assert download.calls == [expected]


async def test_ctx_download_of_the_texts_own_attachment() -> None:
    download = RecordingDownload()
    message = inbound_message("look", media=["https://api.twilio.com/x/Media/ME1.jpg"])
    ctx = Context(message=message, bot_name="test", media_download=download)

    media = await ctx.download(ctx.activity.attachments[0])

    assert media.content_type == "image/jpeg"
    assert download.calls == [("https://api.twilio.com/x/Media/ME1.jpg", "image/jpeg", None)]


async def test_ctx_download_without_a_downloader_says_so() -> None:
    ctx = Context(message=inbound_message("look"), bot_name="test")
    with pytest.raises(NotImplementedError, match="no media downloader"):
        await ctx.download(MEDIA_URL)
