"""GET /metrics: the Prometheus exposition of `adapter.runtime.metrics.Metrics`.

Open where no admin token is set (scrapers on a private network); with one, it needs
the token like the rest of the operator API.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from adapter.web.state import channel_of


async def metrics_endpoint(request: Request) -> Response:
    channel = channel_of(request)
    if channel.metrics is None:
        return Response(status_code=404)
    await channel.metrics.refresh(channel.store, channel.limiter)
    return Response(channel.metrics.render(), media_type=CONTENT_TYPE_LATEST)
