"""Naming a Bot Framework bot as a route's bot, and the secret in its serviceUrl."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapter.botframework.connector_path import connector_secret
from adapter.botframework.remote_bot import RemoteBotRouter
from adapter.config_error import ConfigError
from adapter.runtime.bot_routes import BotConfigError, RouteSpec, load_route_table, routes_from_toml
from adapter.runtime.channel import build_channel
from adapter.runtime.settings import Settings

ENDPOINT = "http://127.0.0.1:3978/api/messages"
NUMBER = "+15550001111"


def settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "account_sid": "AC" + "0" * 32,
        "auth_token": "auth-token",
        "public_url": "https://sms.example.com",
        "database": str(tmp_path / "adapter.sqlite3"),
        "bots": f"botframework+{ENDPOINT}",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def test_a_botframework_route_is_a_router_that_posts_to_the_endpoint() -> None:
    table = load_route_table([RouteSpec("*", f"botframework+{ENDPOINT}?code=s3cret")])

    [route] = table.routes

    assert isinstance(route.router, RemoteBotRouter)
    assert route.router.endpoint.url == f"{ENDPOINT}?code=s3cret"
    assert "s3cret" not in route.bot_name  # what the logs call the bot


def test_a_config_file_names_the_endpoint_and_its_auth() -> None:
    specs = routes_from_toml(
        {
            "routes": [
                {"number": NUMBER, "botframework_endpoint": ENDPOINT, "auth": "jwt"},
                {"default": True, "bot": "bots.echo:router"},
            ]
        }
    )

    assert specs == [
        RouteSpec(NUMBER, f"botframework+{ENDPOINT}", auth="jwt"),
        RouteSpec("*", "bots.echo:router"),
    ]
    router = load_route_table(specs).resolve(NUMBER, None)
    assert router is not None and isinstance(router.router, RemoteBotRouter)
    assert router.router.endpoint.auth == "jwt"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"number": NUMBER, "botframework_endpoint": ENDPOINT, "auth": "basic"}, "auth 'basic'"),
        ({"number": NUMBER, "bot": "bots.echo:router", "auth": "jwt"}, "Bot Framework bots"),
        (
            {"number": NUMBER, "bot": "bots.echo:router", "botframework_endpoint": ENDPOINT},
            "not both",
        ),
        ({"number": NUMBER, "botframework_endpoint": "ftp://bot"}, "http(s) URL"),
        ({"number": NUMBER, "bot": "bots.echo:router", "bot_app_id": "b"}, "Bot Framework bots"),
        (
            {"number": NUMBER, "botframework_endpoint": ENDPOINT, "allowed_callers": []},
            "list of app ids",
        ),
        (
            {"number": NUMBER, "botframework_endpoint": ENDPOINT, "allowed_callers": [1]},
            "list of app ids",
        ),
        ({"number": NUMBER, "botframework_endpoint": ENDPOINT, "scope": " "}, "non-empty"),
    ],
)
def test_a_bad_botframework_route_is_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(BotConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_route_table(routes_from_toml({"routes": [table]}))


@pytest.mark.parametrize(
    ("route", "overrides", "scope", "callers"),
    [
        ({"bot_app_id": "bot"}, {}, "bot/.default", {"bot"}),
        ({"bot_app_id": "bot", "scope": "api://bot/.default"}, {}, "api://bot/.default", {"bot"}),
        ({"bot_app_id": "bot", "allowed_callers": ["a", "b"]}, {}, "bot/.default", {"a", "b"}),
        (
            {},
            {"botframework_bot_app_id": "bot", "botframework_allowed_callers": ("x",)},
            "bot/.default",
            {"x"},
        ),
        (
            {"bot_app_id": "own"},
            {"botframework_scope": "global/.default", "botframework_allowed_callers": ("*",)},
            "own/.default",
            {"*"},
        ),
        ({"allowed_callers": ["x"]}, {}, "https://api.botframework.com/.default", {"x"}),
    ],
)
async def test_a_jwt_bot_gets_its_scope_and_callers_from_its_route_else_the_settings(
    tmp_path: Path,
    route: dict[str, object],
    overrides: dict[str, object],
    scope: str,
    callers: set[str],
) -> None:
    table = {"number": NUMBER, "botframework_endpoint": ENDPOINT, "auth": "jwt", **route}
    channel = build_channel(
        settings(
            tmp_path,
            routes=(table,),
            botframework_app_id="adapter",
            botframework_app_password="password",
            botframework_token_url="https://login.example.com/token",
            botframework_openid_metadata="https://login.example.com/.well-known/openid",
            **overrides,
        )
    )
    [bot] = channel.botframework.bots
    await channel.botframework.aclose()

    assert (bot.scope, set(bot.allowed_callers)) == (scope, callers)


def test_the_service_url_secret_is_stable_and_differs_per_bot_and_key() -> None:
    first = connector_secret("key", ENDPOINT)

    assert first == connector_secret("key", ENDPOINT)
    assert first != connector_secret("key", "http://127.0.0.1:3979/api/messages")
    assert first != connector_secret("other key", ENDPOINT)
    assert len(first) >= 32 and first.replace("-", "").replace("_", "").isalnum()


async def test_the_channel_gives_each_bot_its_service_url(tmp_path: Path) -> None:
    channel = build_channel(settings(tmp_path, botframework_secret="bf-key"))

    [bot] = channel.botframework.bots
    await channel.botframework.aclose()

    assert bot.service_url == (
        f"https://sms.example.com/botframework/{connector_secret('bf-key', ENDPOINT)}"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"public_url": None}, "SMS_ADAPTER_PUBLIC_URL is not set"),
        ({"botframework_auth": "jwt"}, "allows no caller to reply as it"),
        (
            {"botframework_auth": "jwt", "botframework_bot_app_id": "bot"},
            "SMS_ADAPTER_BOTFRAMEWORK_APP_ID",
        ),
    ],
)
def test_a_channel_that_cannot_reach_its_bot_does_not_start(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_channel(settings(tmp_path, **overrides))


async def test_path_secrets_and_endpoint_keys_stay_out_of_access_and_client_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = f"{ENDPOINT}?code=function-key"
    channel = build_channel(settings(tmp_path, bots=f"botframework+{endpoint}"))
    [bot] = channel.botframework.bots
    path = f"/botframework/{bot.secret}/v3/conversations/%2B15551234567/activities"
    # uvicorn may have configured its loggers not to propagate: listen to them directly.
    access, client = logging.getLogger("uvicorn.access"), logging.getLogger("httpx")
    for logger in (access, client):
        caplog.set_level(logging.INFO, logger=logger.name)
        logger.addHandler(caplog.handler)
    try:
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", path, "1.1", 200)
        client.info('HTTP Request: POST %s "HTTP/1.1 201 Created"', endpoint)
    finally:
        for logger in (access, client):
            logger.removeHandler(caplog.handler)
        await channel.botframework.aclose()

    assert "/botframework/<secret>/v3/conversations" in caplog.text
    assert "botframework+http://127.0.0.1:3978/..." in caplog.text
    assert bot.secret not in caplog.text
    assert "function-key" not in caplog.text
