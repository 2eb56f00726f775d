"""A Bot Framework message activity as SMS: text, numbered options, media URLs.

SMS carries plain text and (in MMS) media by URL, so:
- an attachment with an http(s) `contentUrl` becomes a MediaUrl;
- hero and thumbnail cards become their title, subtitle and text, then their buttons as
  a numbered list ("1. Small"), as are `suggestedActions`; one numbering runs through the
  whole activity, so no two options share a number;
- other cards (Adaptive Cards, receipts, sign-in...) have no SMS form: they are skipped
  and named in `skipped`, for the caller to log;
- a body longer than one message is split between words, and more than ten media URLs
  go out over several messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from adapter.long_messages import split_body
from adapter.twilio.limits import MAX_MEDIA

CARD_PREFIX = "application/vnd.microsoft.card."
TEXT_CARDS = frozenset({CARD_PREFIX + "hero", CARD_PREFIX + "thumbnail"})
# Button types whose value is worth spelling out: SMS has no button to hide it behind.
_LINK_ACTIONS = frozenset({"openUrl", "call", "downloadFile", "playAudio", "playVideo"})


@dataclass(frozen=True)
class SmsPart:
    body: str
    media_urls: tuple[str, ...] = ()


@dataclass
class Rendered:
    parts: list[SmsPart] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # content types with no SMS form


def render_message(activity: Mapping[str, Any]) -> Rendered:
    """What a message activity sends as SMS; no parts when it has nothing SMS can carry.

    ValueError (naming the field) when a field has the wrong JSON type."""
    text = _optional_str(activity, "text", "activity")
    attachments = _list_of_objects(activity.get("attachments"), "attachments")
    numbers = _Numbering()
    blocks = [text.strip()] if text and text.strip() else []
    media: list[str] = []
    rendered = Rendered()
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        content_type = _optional_str(attachment, "contentType", where) or ""
        if content_type in TEXT_CARDS:
            content = attachment.get("content")
            if not isinstance(content, Mapping):
                raise ValueError(f"{where}.content must be an object for a {content_type}")
            card = _card_block(content, numbers, f"{where}.content")
            if card:
                blocks.append(card)
            continue
        url = _optional_str(attachment, "contentUrl", where)
        if not content_type.startswith(CARD_PREFIX) and url and _is_web_url(url):
            media.append(url)
        else:
            rendered.skipped.append(content_type or "an attachment without a contentType")

    suggested = activity.get("suggestedActions")
    if suggested is not None:
        if not isinstance(suggested, Mapping):
            raise ValueError("suggestedActions must be an object")
        actions = _list_of_objects(suggested.get("actions"), "suggestedActions.actions")
        options = numbers.lines(actions, "suggestedActions.actions")
        if options:
            blocks.append("\n".join(options))

    rendered.parts = _messages("\n\n".join(blocks), media)
    return rendered


class _Numbering:
    def __init__(self) -> None:
        self.next = 1

    def lines(self, actions: Iterable[Mapping[str, Any]], where: str) -> list[str]:
        lines = []
        for index, action in enumerate(actions):
            label = _action_label(action, f"{where}[{index}]")
            if label:
                lines.append(f"{self.next}. {label}")
                self.next += 1
        return lines


def _card_block(card: Mapping[str, Any], numbers: _Numbering, where: str) -> str:
    lines = [
        value.strip()
        for key in ("title", "subtitle", "text")
        if (value := _optional_str(card, key, where)) and value.strip()
    ]
    buttons = _list_of_objects(card.get("buttons"), f"{where}.buttons")
    lines += numbers.lines(buttons, f"{where}.buttons")
    return "\n".join(lines)


def _action_label(action: Mapping[str, Any], where: str) -> str:
    title = _optional_str(action, "title", where)
    value = action.get("value")
    shown_value = value.strip() if isinstance(value, str) else ""
    label = (title or "").strip() or shown_value
    if action.get("type") in _LINK_ACTIONS and shown_value and shown_value != label:
        return f"{label}: {shown_value}" if label else shown_value
    return label


def _messages(body: str, media: list[str]) -> list[SmsPart]:
    bodies = split_body(body) if body else []
    media_groups = [tuple(media[i : i + MAX_MEDIA]) for i in range(0, len(media), MAX_MEDIA)]
    # The media ride with the first parts; whatever is left over goes out alone.
    count = max(len(bodies), len(media_groups))
    return [
        SmsPart(
            body=bodies[i] if i < len(bodies) else "",
            media_urls=media_groups[i] if i < len(media_groups) else (),
        )
        for i in range(count)
    ]


def _optional_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}.{key} must be a string, not {type(value).__name__}")
    return value


def _list_of_objects(value: object, where: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ValueError(f"{where} must be a list of objects")
    return value


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)
