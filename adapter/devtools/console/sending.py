"""Texting the bot as a person would: through the emulator's `POST /_emulator/inbound`,
which posts a signed webhook to the adapter exactly as Twilio would.

What the page sends is checked here too, with the same reasons the page gives, since a
page is not the only thing that can post to the endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from adapter.history.service import check_address
from adapter.twilio.limits import MAX_BODY_CHARS, MAX_MEDIA

# The emulator answers once the adapter acknowledged the webhook (it gives up after 15 s).
EMULATOR_TIMEOUT_SECONDS = 20.0


class TextRefused(Exception):
    """The text cannot be sent; the message says why, for the person at the page."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class PersonText:
    person: str
    ours: str | None  # None: the emulator's first number
    body: str
    media: tuple[str, ...]

    def emulator_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"From": self.person, "Body": self.body}
        if self.ours:
            data["To"] = self.ours
        if self.media:
            data["MediaUrl"] = list(self.media)
        return data


def parse_person_text(data: object) -> PersonText:
    """The text the page asked to send, or TextRefused saying what is wrong with it."""
    if not isinstance(data, dict):
        raise TextRefused("expected a JSON object")
    person = data.get("person")
    ours = data.get("ours") or None
    body = data.get("body", "")
    media = data.get("media", [])
    if not isinstance(person, str) or not person.strip():
        raise TextRefused("Enter the person's number, such as +15551234567")
    try:
        check_address(person.strip(), "The person's number")
        if ours is not None:
            check_address(str(ours), "Our number")
    except ValueError as error:
        raise TextRefused(str(error)) from None
    if not isinstance(body, str):
        raise TextRefused("body must be text")
    if len(body) > MAX_BODY_CHARS:
        raise TextRefused(f"A text can be at most {MAX_BODY_CHARS} characters")
    if not isinstance(media, list) or not all(isinstance(url, str) for url in media):
        raise TextRefused("media must be a list of URLs")
    if len(media) > MAX_MEDIA:
        raise TextRefused(f"At most {MAX_MEDIA} media URLs")
    for url in media:
        if not url.startswith(("http://", "https://")):
            raise TextRefused(f"{url!r} is not an http(s) URL")
    if not body.strip() and not media:
        raise TextRefused("The message is empty: type some text or add a media URL")
    return PersonText(person.strip(), str(ours) if ours else None, body, tuple(media))


async def text_as_person(emulator_url: str, text: PersonText) -> dict[str, Any]:
    """Post the text to the emulator; its answer (the new message's SID, and how the
    adapter answered the webhook), or TextRefused."""
    url = f"{emulator_url.rstrip('/')}/_emulator/inbound"
    try:
        async with httpx.AsyncClient(timeout=EMULATOR_TIMEOUT_SECONDS) as http:
            response = await http.post(url, json=text.emulator_json())
    except httpx.HTTPError as error:
        raise TextRefused(
            f"the Twilio emulator at {emulator_url} cannot be reached ({type(error).__name__})",
            status=502,
        ) from None
    if response.status_code == 404:
        raise TextRefused(
            f"{emulator_url} is not the Twilio emulator: texting as a person needs "
            "`sms-adapter dev` or SMS_ADAPTER_TWILIO_BASE_URL pointing at `sms-adapter emulator`",
            status=409,
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise TextRefused(f"the emulator answered HTTP {response.status_code}", status=502)
    if not response.is_success:
        raise TextRefused(str(answer.get("error") or f"HTTP {response.status_code}"))
    return answer
