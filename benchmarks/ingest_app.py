"""The adapter as `serve` builds it, plus a bare endpoint answering the same TwiML.

Both live in one server process, so the ingest benchmark compares them on equal terms:
`uvicorn --factory benchmarks.ingest_app:build`.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapter.runtime.channel import build_channel
from adapter.runtime.gc_tuning import tune_garbage_collector
from adapter.runtime.settings import load_settings
from adapter.twilio.webhook_form import EMPTY_TWIML
from adapter.web.app import create_app


async def bare(request: Request) -> Response:
    await request.body()
    return Response(EMPTY_TWIML, media_type="text/xml")


def build() -> Starlette:
    settings, _ = load_settings(os.environ)
    app = create_app(
        settings,
        channel=build_channel(settings),
        extra_routes=[Route("/bare", bare, methods=["POST"])],
    )
    tune_garbage_collector()  # as `sms-adapter serve` does
    return app
