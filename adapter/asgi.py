"""The whole adapter as one ASGI app, for an ASGI server of the user's choosing:

    uvicorn --factory adapter.asgi:app_from_environment

Settings come from the environment (and SMS_ADAPTER_CONFIG), as for `sms-adapter serve`.
"""

from __future__ import annotations

import logging
import os

from starlette.applications import Starlette

from adapter.devtools import console
from adapter.runtime.channel import Channel
from adapter.runtime.gc_tuning import tune_garbage_collector
from adapter.runtime.logging_setup import configure_logging
from adapter.runtime.settings import Settings, load_settings
from adapter.web.app import create_app

logger = logging.getLogger("adapter")


def build_app(settings: Settings, *, channel: Channel | None = None) -> Starlette:
    """The adapter with the operator console when an admin token lets anyone use it
    (dev mode adds the console itself, next to the emulator)."""
    extra = console.routes() if settings.admin_token else []
    return create_app(settings, channel=channel, extra_routes=extra)


def app_from_environment() -> Starlette:
    """Logging follows the SMS_ADAPTER_LOG_* settings (uvicorn's lines too), so secrets
    are redacted here as well."""
    settings, warnings = load_settings(os.environ)
    configure_logging(settings)
    for warning in warnings:
        logger.warning(warning)
    app = build_app(settings)
    tune_garbage_collector()
    return app


__all__ = ["app_from_environment", "build_app"]
