"""What the Bot Framework bridge needs from the settings, as typed values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True)
class BotFrameworkConfig:
    public_url: str | None  # bots reply to the adapter here (their serviceUrl)
    secret_key: str | None  # connector secrets are derived from it
    default_auth: str  # "none" or "jwt", for routes that do not say
    timeout: float  # seconds for one post to a bot
    send_max_age: timedelta  # how long a text keeps being offered to a bot
    app_id: str | None = None
    app_password: str | None = field(default=None, repr=False)
    token_url: str | None = None
    openid_metadata: str | None = None
    bot_app_id: str | None = None  # for bots whose route does not give one
    scope: str | None = None  # for bots whose route gives neither scope nor app id
    allowed_callers: tuple[str, ...] = ()  # for bots whose route does not say
    issuers: tuple[str, ...] = ()
    audience: str | None = None
