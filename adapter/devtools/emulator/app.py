"""The emulator as one Starlette app: Twilio's REST API plus the `/_emulator` dev tools."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.media import cdn_routes
from adapter.devtools.emulator.rest import RestApi
from adapter.devtools.emulator.signing import Signer
from adapter.devtools.emulator.simulator import Simulator
from adapter.devtools.emulator.state import EmulatorState
from adapter.web.body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware


def create_emulator_app(config: EmulatorConfig, state: EmulatorState | None = None) -> Starlette:
    """An emulated Twilio account. Mountable (`Mount("/", app=...)`): nothing here needs
    a lifespan. Whoever runs it calls `await state.aclose()` when done; the state is also
    at `app.state.emulator`. Run standalone, the app closes it at shutdown itself."""
    state = state if state is not None else EmulatorState()
    signer = Signer(config.auth_token, config.webhook_shared_key)
    rest = RestApi(config, state, signer, random.Random(config.faults.seed))
    simulator = Simulator(config, state, signer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.aclose()

    app = Starlette(
        routes=[*simulator.routes(), *cdn_routes(state), *rest.routes()],
        lifespan=lifespan,
        # Twilio refuses large requests too; the emulator may face a browser or a script.
        middleware=[Middleware(BodyLimitMiddleware, default=DEFAULT_MAX_BODY_BYTES)],
    )
    app.state.emulator = state
    return app
