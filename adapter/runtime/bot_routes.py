"""Which bot answers which of our numbers: loading bots and the route table.

A bot is named by a spec, `package.module:attribute` (`bots.echo:router`). The
attribute is a `Router`, or a plain function `handle(ctx)` that then handles every text.
Without `:attribute` the module's `router` is used.

Routes come from `SMS_ADAPTER_BOTS`, either one spec (the bot for every number) or
comma-separated `key=spec` pairs:

    SMS_ADAPTER_BOTS=+15550001111=bots.help_desk:router,MG0123...=bots.sales:router,*=bots.echo:router

or from a config file's `[[routes]]` tables (see `routes_from_toml`). A key is one of
our numbers in E.164 form, a `whatsapp:+E.164` address, a Messaging Service SID (the
texts Twilio delivers for that service) or `*`, the default. A text goes to the route of
its exact To address, else of its Messaging Service, else the default.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from adapter.bot.router import Router
from adapter.botframework.endpoint import PREFIX as BOTFRAMEWORK_PREFIX
from adapter.botframework.endpoint import is_botframework_spec, parse_auth_mode
from adapter.botframework.remote_bot import remote_bot_router
from adapter.config_error import ConfigError
from adapter.delivery.routes import DEFAULT_KEY, Route, RouteTable
from adapter.runtime.settings import Settings
from adapter.twilio.addresses import is_address, is_service_sid
from adapter.twilio.send_options import InvalidSendOption, SendOptions

SETTING = "SMS_ADAPTER_BOTS"

_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?")
_KEY_HELP = (
    "a key is one of our numbers in E.164 form (+15550001111), a whatsapp:+E.164 address, "
    "a Messaging Service SID (MG and 32 lowercase hex digits) or * for the default route"
)
_TOML_KEYS = (
    "bot",
    "number",
    "messaging_service_sid",
    "default",
    "send_via_messaging_service",
    "botframework_endpoint",
    "auth",
    "send",
    "bot_app_id",
    "scope",
    "allowed_callers",
)
# Keys only a Bot Framework bot's route may have (each also a RouteSpec field).
_BOTFRAMEWORK_KEYS = ("auth", "bot_app_id", "scope", "allowed_callers")


class BotConfigError(ConfigError, ValueError):
    """A bot or a route that cannot work; the message names the spec or the setting.

    A ConfigError, so the command line reports it in one line like any bad setting."""


@dataclass(frozen=True)
class RouteSpec:
    """One route as configured: which key, which bot spec. Checked when made."""

    key: str
    bot: str
    send_via_messaging_service: str | None = None
    auth: str | None = None  # Bot Framework bots only: "none" or "jwt"
    send: SendOptions = field(default_factory=SendOptions)  # [routes.send]: for every reply
    # Bot Framework bots in auth mode jwt: the bot's app id, the scope of its tokens, the
    # app ids allowed to reply as it.
    bot_app_id: str | None = None
    scope: str | None = None
    allowed_callers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.key != DEFAULT_KEY and not is_address(self.key) and not is_service_sid(self.key):
            raise BotConfigError(f"{self.key!r} is not a route key: {_KEY_HELP}")
        _check_spec(self.bot)
        if not is_botframework_spec(self.bot):
            given = [name for name in _BOTFRAMEWORK_KEYS if getattr(self, name) is not None]
            if given:
                raise BotConfigError(
                    f"{', '.join(given)} applies to Bot Framework bots (botframework_endpoint) only"
                )
        service = self.send_via_messaging_service
        if service is not None and not is_service_sid(service):
            raise BotConfigError(
                f"send_via_messaging_service {service!r} is not a Messaging Service SID "
                "(MG and 32 lowercase hex digits)"
            )
        if self.send.send_at is not None:
            raise BotConfigError(
                "send.send_at: a fixed time cannot be a default for every reply; "
                "give send_at in ctx.reply()"
            )
        if self.send.shorten_urls and service is None:
            raise BotConfigError(
                "send.shorten_urls works only through a Messaging Service: "
                "set send_via_messaging_service too"
            )


def load_route_table(specs: Iterable[RouteSpec]) -> RouteTable:
    """Load each bot the specs name (once per bot, however many routes share it)."""
    routes: dict[str, Route] = {}
    loaded: dict[tuple[object, ...], Router] = {}
    for spec in specs:
        if spec.key in routes:
            raise BotConfigError(f"two routes for {_key_name(spec.key)}")
        how = (spec.bot, spec.auth, spec.bot_app_id, spec.scope, spec.allowed_callers)
        if how not in loaded:
            loaded[how] = load_bot(
                spec.bot,
                spec.auth,
                app_id=spec.bot_app_id,
                scope=spec.scope,
                allowed_callers=spec.allowed_callers,
            )
        router = loaded[how]
        # A Bot Framework URL may hold a key: its Router's name shows it without.
        bot_name = router.name if is_botframework_spec(spec.bot) else spec.bot
        routes[spec.key] = Route(
            spec.key, router, bot_name or spec.bot, spec.send_via_messaging_service, spec.send
        )
    if not routes:
        raise BotConfigError("no bot routes are configured")
    return RouteTable(routes.values())


def route_specs(settings: Settings) -> list[RouteSpec]:
    """The routes the settings name, checked but with no bot loaded: the config file's
    [[routes]] if it has any, else SMS_ADAPTER_BOTS."""
    if settings.routes:
        return routes_from_toml({"routes": settings.routes})
    return parse_routes(settings.bots)


def build_route_table(settings: Settings) -> RouteTable:
    """The routes the settings name, each bot loaded. Bots are looked for in the current
    directory first, as uvicorn looks for apps, so `SMS_ADAPTER_BOTS=mybot:router
    sms-adapter dev` finds ./mybot.py."""
    specs = route_specs(settings)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return load_route_table(specs)


def load_bot(
    spec: str,
    auth: str | None = None,
    *,
    app_id: str | None = None,
    scope: str | None = None,
    allowed_callers: tuple[str, ...] | None = None,
) -> Router:
    """Import the bot named by `spec` ("package.module:attribute") and return its Router;
    for a Bot Framework bot (`botframework+URL`), the Router that posts texts to it."""
    spec = spec.strip()
    _check_spec(spec)
    if is_botframework_spec(spec):
        try:
            return remote_bot_router(
                spec, auth, app_id=app_id, scope=scope, allowed_callers=allowed_callers
            )
        except ValueError as error:
            raise BotConfigError(f"bot {_shown(spec)}: {error}") from None
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "router"
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        hint = ""
        if isinstance(error, ModuleNotFoundError) and _is_package_of(error.name, module_name):
            hint = "; is it on the Python path (in the directory you run from)?"
        raise BotConfigError(
            f"bot {spec!r}: cannot import {module_name!r}: {error}{hint}"
        ) from error
    except Exception as error:
        raise BotConfigError(
            f"bot {spec!r}: importing {module_name!r} raised {type(error).__name__}: {error}"
        ) from error

    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            routers = [name for name, v in vars(module).items() if isinstance(v, Router)]
            found = f"; its Routers: {', '.join(routers)}" if routers else ""
            raise BotConfigError(f"bot {spec!r}: {module_name} has no {attribute!r}{found}")
        value = getattr(value, part)

    if isinstance(value, Router):
        return value
    if inspect.isfunction(value):
        router = Router(spec)
        router.message()(value)
        return router
    raise BotConfigError(
        f"bot {spec!r}: {attribute} is a {type(value).__name__}, not a Router or a handler function"
    )


def parse_routes(value: str) -> list[RouteSpec]:
    """Routes from the `SMS_ADAPTER_BOTS` setting's text."""
    value = value.strip()
    if not value:
        raise BotConfigError(f"{SETTING} is empty: name a bot, like bots.echo:router")
    if "=" not in value or is_botframework_spec(value):
        if "," in value:
            raise BotConfigError(
                f"{SETTING}: several bots need a key each, "
                "like +15550001111=bots.help_desk:router,*=bots.echo:router"
            )
        return [_route_spec(DEFAULT_KEY, value, f"{SETTING} {_shown(value)}")]

    specs: list[RouteSpec] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue  # a trailing comma, or a line break after one
        where = f"{SETTING} item {_shown(item)}"
        key, equals, bot = (text.strip() for text in item.partition("="))
        if not equals:
            raise BotConfigError(f"{where}: write KEY=BOT, like *=bots.echo:router")
        if not key:
            raise BotConfigError(f"{where}: the key before = is empty; {_KEY_HELP}")
        if not bot:
            raise BotConfigError(f"{where}: no bot after =, like bots.echo:router")
        specs.append(_route_spec(key, bot, where))
    _reject_duplicates(specs, SETTING)
    return specs


def routes_from_toml(data: Mapping[str, Any]) -> list[RouteSpec]:
    """Routes from a parsed config file's `[[routes]]` tables:

    [[routes]]
    number = "+15550001111"        # or messaging_service_sid = "MG...", or default = true
    bot = "bots.echo:router"
    send_via_messaging_service = "MG..."   # optional: replies go through this service

    [routes.send]                  # optional: Send Message options for every reply
    validity_period = 600          # the names of ctx.reply()'s options, but send_at

    A Bot Framework bot is `botframework_endpoint = "https://..."` instead of `bot`, with an
    optional `auth = "none"` or `"jwt"`, and for jwt `bot_app_id = "..."` (the bot's app
    id), `scope = "..."` (default: the app id + /.default) and `allowed_callers = [...]`
    (the app ids whose tokens may reply as the bot; default: the app id).
    """
    tables = data.get("routes")
    if not isinstance(tables, list | tuple) or not tables:
        raise BotConfigError("the config file needs at least one [[routes]] table")
    specs: list[RouteSpec] = []
    for index, table in enumerate(tables, start=1):
        where = f"[[routes]] #{index}"
        if not isinstance(table, Mapping):
            raise BotConfigError(f"{where}: expected a table, got {type(table).__name__}")
        unknown = sorted(set(table) - set(_TOML_KEYS))
        if unknown:
            raise BotConfigError(
                f"{where}: unknown key {', '.join(unknown)}; expected {', '.join(_TOML_KEYS)}"
            )
        key = _toml_key(table, where)
        bot = _toml_bot(table, where)
        service = table.get("send_via_messaging_service")
        if service is not None and not isinstance(service, str):
            raise BotConfigError(f"{where}: send_via_messaging_service must be a string")
        auth = table.get("auth")
        if auth is not None:
            try:
                auth = parse_auth_mode(auth if isinstance(auth, str) else repr(auth))
            except ValueError as error:
                raise BotConfigError(f"{where}: auth {auth!r}: {error}") from None
        send = _toml_send(table.get("send", {}), where)
        options = _toml_jwt_options(table, where)
        specs.append(_route_spec(key, bot, where, service, auth, send, **options))
    _reject_duplicates(specs, "[[routes]]")
    return specs


def _toml_send(value: object, where: str) -> SendOptions:
    if not isinstance(value, Mapping):
        raise BotConfigError(f"{where}: send must be a table ([routes.send])")
    try:
        return SendOptions.from_mapping(value, where="send.")
    except InvalidSendOption as error:
        raise BotConfigError(f"{where}: {error}") from None
    except TypeError as error:  # a TOML value of the wrong kind for a dataclass field
        raise BotConfigError(f"{where}: send: {error}") from None


def _toml_jwt_options(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """bot_app_id, scope and allowed_callers of a [[routes]] table, checked."""
    options: dict[str, Any] = {}
    for name in ("bot_app_id", "scope"):
        value = table.get(name)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise BotConfigError(f"{where}: {name} must be a non-empty string")
            options[name] = value.strip()
    callers = table.get("allowed_callers")
    if callers is not None:
        if isinstance(callers, str):
            callers = [callers]
        if (
            not isinstance(callers, list)
            or not callers
            or not all(isinstance(item, str) and item.strip() for item in callers)
        ):
            raise BotConfigError(
                f'{where}: allowed_callers must be a list of app ids, like ["<app id>"] '
                '(or ["*"] for any caller)'
            )
        options["allowed_callers"] = tuple(item.strip() for item in callers)
    return options


def _toml_bot(table: Mapping[str, Any], where: str) -> str:
    """The bot spec of a [[routes]] table: `bot`, or `botframework_endpoint` as a spec."""
    given = [name for name in ("bot", "botframework_endpoint") if name in table]
    if not given:
        raise BotConfigError(
            f'{where}: needs bot = "package.module:attribute" '
            '(or botframework_endpoint = "https://..." for a Bot Framework bot)'
        )
    if len(given) == 2:
        raise BotConfigError(f"{where}: give bot or botframework_endpoint, not both")
    value = table[given[0]]
    if not isinstance(value, str) or not value.strip():
        raise BotConfigError(f"{where}: {given[0]} must be a non-empty string")
    value = value.strip()
    if given[0] == "botframework_endpoint" and not is_botframework_spec(value):
        value = BOTFRAMEWORK_PREFIX + value
    return value


def _toml_key(table: Mapping[str, Any], where: str) -> str:
    given = [name for name in ("number", "messaging_service_sid", "default") if name in table]
    if len(given) != 1:
        raise BotConfigError(
            f"{where}: give exactly one of number, messaging_service_sid or default = true"
        )
    value = table[given[0]]
    if given[0] == "default":
        if value is not True:
            raise BotConfigError(f"{where}: default must be true (leave it out otherwise)")
        return DEFAULT_KEY
    if not isinstance(value, str):
        raise BotConfigError(f"{where}: {given[0]} must be a string")
    value = value.strip()
    valid = is_address(value) if given[0] == "number" else is_service_sid(value)
    if not valid:
        raise BotConfigError(f"{where}: {given[0]} {value!r} is not valid; {_KEY_HELP}")
    return value


def _route_spec(
    key: str,
    bot: str,
    where: str,
    service: str | None = None,
    auth: str | None = None,
    send: SendOptions | None = None,
    **jwt_options: Any,
) -> RouteSpec:
    try:
        return RouteSpec(key, bot, service, auth, send or SendOptions(), **jwt_options)
    except BotConfigError as error:
        raise BotConfigError(f"{where}: {error}") from None


def _reject_duplicates(specs: list[RouteSpec], where: str) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.key in seen:
            raise BotConfigError(f"{where}: two routes for {_key_name(spec.key)}")
        seen.add(spec.key)


def _check_spec(spec: str) -> None:
    if is_botframework_spec(spec):
        return  # a URL: refused when loaded, with its own message
    module_name = spec.partition(":")[0]
    if module_name.endswith(".py"):
        dotted = module_name.removesuffix(".py").replace("/", ".")
        raise BotConfigError(f"{spec!r} names a file: write the module, like {dotted}:router")
    if not _SPEC.fullmatch(spec):
        raise BotConfigError(
            f"{spec!r} is not a bot: write package.module:attribute, like bots.echo:router"
        )


def _is_package_of(name: str | None, module_name: str) -> bool:
    return name is not None and (module_name == name or module_name.startswith(name + "."))


def _key_name(key: str) -> str:
    return "the default (*)" if key == DEFAULT_KEY else key


def _shown(text: str) -> str:
    """`text` for an error message, without what a Bot Framework URL may hide in it
    (a password, a function key in the query string)."""
    prefix, found, url = text.partition(BOTFRAMEWORK_PREFIX)
    if not found:
        return repr(text)
    parts = urlsplit(url)
    return repr(f"{prefix}{BOTFRAMEWORK_PREFIX}{parts.scheme}://{parts.hostname or ''}/...")
