"""The running channel, as the endpoints find it on the app."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from adapter.runtime.channel import Channel


def channel_of(connection: HTTPConnection) -> Channel:
    channel: Channel = connection.app.state.channel
    return channel
