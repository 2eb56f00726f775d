"""A Bot Framework bot named as a route's bot: `botframework+https://bot.example.com/api/messages`.

The part after `botframework+` is the bot's messaging endpoint, where each text is posted
as an activity. It may hide a secret (a password, an Azure Functions `?code=` key), so
logs and errors show `shown` instead of the URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

PREFIX = "botframework+"
AUTH_MODES = ("none", "jwt")


@dataclass(frozen=True)
class BotEndpoint:
    url: str  # the messaging endpoint, without the prefix
    auth: str | None = None  # "none" | "jwt"; None: SMS_ADAPTER_BOTFRAMEWORK_AUTH decides
    # Auth mode jwt: the bot's own app id, the scope of the tokens it is sent (default:
    # the app id + /.default) and the app ids whose tokens may reply as it (default:
    # SMS_ADAPTER_BOTFRAMEWORK_ALLOWED_CALLERS, else the app id).
    app_id: str | None = None
    scope: str | None = None
    allowed_callers: tuple[str, ...] | None = None

    @property
    def shown(self) -> str:
        """The endpoint for logs: scheme, host and port only."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{PREFIX}{parts.scheme}://{parts.hostname}{port}/..."

    @property
    def bot_id(self) -> str:
        """A stable, secret-free name for this bot in the store's records."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]


def is_botframework_spec(spec: str) -> bool:
    return spec.strip().startswith(PREFIX)


def parse_endpoint(
    spec: str,
    auth: str | None = None,
    *,
    app_id: str | None = None,
    scope: str | None = None,
    allowed_callers: tuple[str, ...] | None = None,
) -> BotEndpoint:
    """`botframework+URL` (or a bare URL, as a config file's `botframework_endpoint`)
    as a BotEndpoint; ValueError says what is wrong without repeating the URL."""
    url = spec.strip().removeprefix(PREFIX)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(
            "a Bot Framework bot is botframework+ and its messaging endpoint, an absolute "
            "http(s) URL like botframework+http://127.0.0.1:3978/api/messages"
        )
    if auth is not None and auth not in AUTH_MODES:
        raise ValueError(f"auth {auth!r} is not one of {', '.join(AUTH_MODES)}")
    return BotEndpoint(
        url=url, auth=auth, app_id=app_id, scope=scope, allowed_callers=allowed_callers
    )


def parse_auth_mode(value: str) -> str:
    """The SMS_ADAPTER_BOTFRAMEWORK_AUTH setting (or a route's `auth`)."""
    mode = value.strip().lower()
    if mode not in AUTH_MODES:
        raise ValueError(f"expected one of {', '.join(AUTH_MODES)}")
    return mode
