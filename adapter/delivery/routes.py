"""Which bot answers a text: our address or Messaging Service → a bot's Router.

The table is built once at start (`adapter.runtime.bot_routes` loads the bots the
settings name); the dispatcher, status callbacks and the Bot Framework bridge look
routes up in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from adapter.bot.router import Router
from adapter.twilio.send_options import SendOptions

DEFAULT_KEY = "*"  # the route for texts no other route claims


@dataclass(frozen=True)
class Route:
    name: str  # the key it was configured under
    router: Router
    bot_name: str  # the bot's spec
    send_via_messaging_service: str | None = None
    # Send Message options for every reply of this route (`[routes.send]`); a reply's own
    # options win.
    send_defaults: SendOptions = field(default_factory=SendOptions)

    def reply_sender(self, to: str) -> tuple[str | None, str | None]:
        """(from_, messaging_service_sid) for replies to a text sent to our address `to`:
        from that same address, unless the route sends through a Messaging Service."""
        if self.send_via_messaging_service is not None:
            return None, self.send_via_messaging_service
        return to, None


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = {route.name: route for route in routes}

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes.values())

    def resolve(self, to: str, messaging_service_sid: str | None) -> Route | None:
        """The route for a text sent to `to`: exact address, then service, then default."""
        for key in (to, messaging_service_sid, DEFAULT_KEY):
            if key is not None and key in self._routes:
                return self._routes[key]
        return None
