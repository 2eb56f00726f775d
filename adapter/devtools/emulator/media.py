"""Media of the texts people send, hosted the way Twilio hosts them.

A simulated person's MediaUrl says where their picture is: any URL, or a `data:` URL
holding the bytes themselves. The emulator keeps it under a Media SID (ME...) and posts
the webhook with a MediaUrl of Twilio's own kind,
`{emulator}/2010-04-01/Accounts/{AC}/Messages/{MM}/Media/{ME}`. Fetching that URL takes
the account's credentials (as with Twilio's "HTTP Basic authentication for media" on)
and answers with a redirect to a CDN-style URL, `/_emulator/media/{ME}`, which needs none
and serves the bytes: decoded from the `data:` URL, or fetched from the original URL
then and there.

The Media subresource every message advertises (`subresource_uris.media`) lists and
fetches those files as Twilio's Media resources (`.../Media.json`, `.../Media/{ME}.json`),
for texts people sent and for the account's own sends with MediaUrl alike; Delete Media
removes one.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from adapter.devtools.emulator.errors import not_found
from adapter.devtools.emulator.hosted_media import HostedMedia
from adapter.devtools.emulator.listing import numbered_page, paging
from adapter.devtools.emulator.resource import message_uri
from adapter.twilio.messages import Media
from adapter.twilio.resources import format_rfc2822

if TYPE_CHECKING:
    from adapter.devtools.emulator.state import EmulatorState

CDN_PATH = "/_emulator/media"
DATA_SCHEME = "data:"


def hosted_media(
    state: EmulatorState, message_sid: str, source: Media, base_url: str, account_sid: str
) -> Media:
    """Host `source` as a media file of message `message_sid`; return it as the webhook
    shows it, at its Twilio-style URL under `base_url` (where the emulator is)."""
    hosted = state.media.host(message_sid, source, state.clock())
    path = f"{message_uri(account_sid, message_sid)}/Media/{hosted.sid}"
    return Media(url=base_url.rstrip("/") + path, content_type=hosted.content_type)


def data_url_type(url: str) -> str | None:
    """The media type a `data:` URL declares, or None for any other URL."""
    if not url.startswith(DATA_SCHEME):
        return None
    header = url[len(DATA_SCHEME) :].partition(",")[0]
    return header.split(";")[0].strip() or "text/plain"


async def redirect_to_content(state: EmulatorState, request: Request) -> Response:
    """The Media resource's own URL (credentials checked by the caller): a redirect to
    the file on the "CDN"."""
    hosted = _hosted(state, request)
    return RedirectResponse(f"{str(request.base_url).rstrip('/')}{CDN_PATH}/{hosted.sid}", 302)


def media_json(hosted: HostedMedia, account_sid: str) -> dict[str, Any]:
    """A media file as Twilio's Media resource."""
    return {
        "account_sid": account_sid,
        "content_type": hosted.content_type,
        "date_created": format_rfc2822(hosted.date_created),
        "date_updated": format_rfc2822(hosted.date_created),
        "parent_sid": hosted.message_sid,
        "sid": hosted.sid,
        "uri": f"{message_uri(account_sid, hosted.message_sid)}/Media/{hosted.sid}.json",
    }


async def list_media(state: EmulatorState, account_sid: str, request: Request) -> Response:
    """List Media of a message: Twilio's page envelope, its files in `media_list`."""
    message_sid = request.path_params["sid"]
    if state.get(message_sid) is None:
        raise not_found(request.url.path)
    page, size = paging(request.query_params)
    files = state.media.of_message(message_sid)
    base = f"{message_uri(account_sid, message_sid)}/Media.json"

    def uri(number: int) -> str:
        return f"{base}?PageSize={size}&Page={number}"

    return JSONResponse(
        numbered_page(
            "media_list", files, page, size, lambda hosted: media_json(hosted, account_sid), uri
        )
    )


def _hosted(state: EmulatorState, request: Request) -> HostedMedia:
    hosted = state.media.get(request.path_params["media_sid"])
    if hosted is None or hosted.message_sid != request.path_params["sid"]:
        raise not_found(request.url.path)
    return hosted


async def fetch_media(state: EmulatorState, account_sid: str, request: Request) -> Response:
    return JSONResponse(media_json(_hosted(state, request), account_sid))


async def delete_media(state: EmulatorState, request: Request) -> Response:
    state.media.delete(_hosted(state, request).sid)
    return Response(status_code=204)


def cdn_routes(state: EmulatorState) -> list[BaseRoute]:
    async def content(request: Request) -> Response:
        hosted = state.media.get(request.path_params["media_sid"])
        if hosted is None:
            return JSONResponse({"error": "no such media"}, status_code=404)
        try:
            body = await _bytes_of(state, hosted.source)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=502)
        return Response(body, media_type=hosted.content_type)

    return [Route(CDN_PATH + "/{media_sid}", content, methods=["GET"])]


async def _bytes_of(state: EmulatorState, source: str) -> bytes:
    if source.startswith(DATA_SCHEME):
        return _decode_data_url(source)
    try:
        response = await state.http_client().get(source, follow_redirects=True)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise ValueError(f"the media's source cannot be read: {type(error).__name__}") from None
    if not response.is_success:
        raise ValueError(f"the media's source answered HTTP {response.status_code}")
    return response.content


def _decode_data_url(url: str) -> bytes:
    header, separator, data = url[len(DATA_SCHEME) :].partition(",")
    if not separator:
        raise ValueError("the media's data: URL has no comma before its data")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(unquote_to_bytes(data), validate=True)
        except binascii.Error:
            raise ValueError("the media's data: URL is not valid base64") from None
    return unquote_to_bytes(data)
