"""Whether the console exists here: in dev mode (the emulator beside it is just as open),
elsewhere only where `SMS_ADAPTER_ADMIN_TOKEN` is set.

Who may use its API is decided by the app's one auth middleware (`adapter.web.auth`):
the token comes as a bearer header, or as `?token=` where a header cannot be set (a link
opened in a browser, an EventSource). The page keeps it in memory and never gets it
back from the server; the log's redactor hides it in access log lines.
"""

from __future__ import annotations

from starlette.requests import Request

from adapter.web.state import channel_of


def console_enabled(request: Request) -> bool:
    """Whether the console exists here at all (its static files are public where it does:
    they hold no data, and a page cannot put a header on a <script> request)."""
    settings = channel_of(request).settings
    return settings.dev_mode or bool(settings.admin_token)
