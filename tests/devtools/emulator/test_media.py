"""Media people send, hosted as Twilio hosts them: the webhook's MediaUrl is the
emulator's Media resource, which takes the account's credentials and redirects to a
CDN-style URL serving the bytes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.devtools.emulator.conftest import ACCOUNT_SID, PERSON, Emulator
from tests.servers import bound_socket, serve

INBOUND = "/_emulator/inbound"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


async def media_urls(emulator: Emulator, *sources: str, **fields: str) -> list[str]:
    """Text the sources in; the MediaUrl of each, as the webhook carries it."""
    answer = await emulator.client.post(
        INBOUND, data={"From": PERSON, "MediaUrl": list(sources), **fields}
    )
    assert answer.status_code == 200, answer.text
    stored = emulator.state.get(answer.json()["sid"])
    assert stored is not None
    return [media.url for media in stored.media]


@pytest.fixture
async def picture_host() -> AsyncIterator[str]:
    """A web server on loopback holding a picture at /cat.png (and nothing else)."""

    async def picture(request: Request) -> Response:
        return Response(PNG, media_type="image/png")

    sock, base = bound_socket()
    async with serve(Starlette(routes=[Route("/cat.png", picture)]), sock):
        yield base


async def test_the_media_url_redirects_to_the_bytes(emulator: Emulator) -> None:
    [url] = await media_urls(emulator, PNG_DATA_URL)

    found = await emulator.client.get(url)
    assert found.status_code == 302
    content = await emulator.client.get(found.headers["location"], auth=None)

    assert url.startswith(f"http://emulator/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM")
    assert (content.status_code, content.content) == (200, PNG)
    assert content.headers["content-type"] == "image/png"


async def test_a_picture_at_a_url_is_fetched_from_there(
    emulator: Emulator, picture_host: str
) -> None:
    [url] = await media_urls(emulator, f"{picture_host}/cat.png")

    found = await emulator.client.get(url, follow_redirects=True)

    assert found.content == PNG
    assert found.headers["content-type"] == "image/png"


async def test_each_file_of_a_text_has_its_own_url(emulator: Emulator) -> None:
    text = "data:text/plain,hello%20there"
    urls = await media_urls(emulator, PNG_DATA_URL, text)

    contents = [(await emulator.client.get(u, follow_redirects=True)).content for u in urls]

    assert contents == [PNG, b"hello there"]


async def test_the_media_resource_wants_the_accounts_credentials(emulator: Emulator) -> None:
    [url] = await media_urls(emulator, PNG_DATA_URL)

    anonymous = await emulator.client.get(url, auth=None)
    wrong = await emulator.client.get(url, auth=(ACCOUNT_SID, "not-the-token"))

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.json()["code"] == 20003


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda url: url[:-4] + "0000", id="unknown-media-sid"),
        pytest.param(
            lambda url: url.replace("/Messages/MM", "/Messages/MMffff"), id="another-message"
        ),
    ],
)
async def test_unknown_media_answer_twilios_404(
    emulator: Emulator, mangle: Callable[[str], str]
) -> None:
    [url] = await media_urls(emulator, PNG_DATA_URL)

    answer = await emulator.client.get(mangle(url))

    assert answer.status_code == 404
    assert answer.json()["code"] == 20404


@pytest.mark.parametrize(
    ("source", "error"),
    [
        pytest.param("http://127.0.0.1:9/cat.png", "cannot be read", id="unreachable"),
        pytest.param("data:image/png;base64,%%%", "not valid base64", id="bad-base64"),
        pytest.param("data:image/png;base64", "no comma", id="no-data"),
    ],
)
async def test_a_source_that_cannot_be_read_answers_502(
    emulator: Emulator, source: str, error: str
) -> None:
    [url] = await media_urls(emulator, source, MediaContentType="image/png")

    answer = await emulator.client.get(url, follow_redirects=True)

    assert answer.status_code == 502
    assert error in answer.json()["error"]


async def test_the_data_urls_type_is_the_media_type(emulator: Emulator) -> None:
    answer = await emulator.client.post(INBOUND, data={"From": PERSON, "MediaUrl": PNG_DATA_URL})
    stored = emulator.state.get(answer.json()["sid"])

    assert stored is not None and [m.content_type for m in stored.media] == ["image/png"]


async def test_outbound_media_are_recorded_as_sent(emulator: Emulator) -> None:
    urls = ["https://example.com/a.jpg", "https://example.com/b.png"]
    created = (await emulator.send(Body="two pictures", MediaUrl=urls)).json()

    stored = emulator.state.get(created["sid"])

    assert created["num_media"] == "2" and created["sid"].startswith("MM")
    assert stored is not None and [m.url for m in stored.media] == urls
