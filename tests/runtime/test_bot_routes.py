import re
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import bots.echo
import bots.help_desk
from adapter.bot.router import Router
from adapter.config_error import ConfigError
from adapter.delivery.routes import RouteTable
from adapter.runtime.bot_routes import (
    BotConfigError,
    Route,
    RouteSpec,
    build_route_table,
    load_bot,
    load_route_table,
    parse_routes,
    routes_from_toml,
)
from adapter.runtime.settings import Settings
from adapter.testing import BotConversation
from adapter.twilio.send_options import SendOptions

NUMBER = "+15550001111"
OTHER_NUMBER = "+15550002222"
SERVICE = "MG" + "0123456789abcdef" * 2
OTHER_SERVICE = "MG" + "f" * 32
ECHO = "bots.echo:router"
HELP_DESK = "bots.help_desk:router"


@pytest.fixture
def bot_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a throwaway bot module; return its importable name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"bot_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


# --- SMS_ADAPTER_BOTS ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ECHO, [("*", ECHO, None)]),
        (f"  {ECHO}\n", [("*", ECHO, None)]),
        ("bots.echo", [("*", "bots.echo", None)]),
        (f"*={ECHO}", [("*", ECHO, None)]),
        (
            f"{NUMBER}={HELP_DESK}, {SERVICE}={ECHO} ,*={ECHO}",
            [(NUMBER, HELP_DESK, None), (SERVICE, ECHO, None), ("*", ECHO, None)],
        ),
        (f"whatsapp:{NUMBER}={HELP_DESK},", [(f"whatsapp:{NUMBER}", HELP_DESK, None)]),
        (
            f"{NUMBER} = {ECHO},\n{OTHER_NUMBER}={ECHO}",
            [(NUMBER, ECHO, None), (OTHER_NUMBER, ECHO, None)],
        ),
        (
            "*=botframework+https://bot.example.com/api/messages",
            [("*", "botframework+https://bot.example.com/api/messages", None)],
        ),
    ],
)
def test_good_bot_settings(value: str, expected: list[tuple[str, str, None]]) -> None:
    assert parse_routes(value) == [RouteSpec(*row) for row in expected]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "SMS_ADAPTER_BOTS is empty: name a bot, like bots.echo:router"),
        (f"{ECHO},{HELP_DESK}", "SMS_ADAPTER_BOTS: several bots need a key each"),
        ("bots/echo.py", "SMS_ADAPTER_BOTS 'bots/echo.py': 'bots/echo.py' names a file"),
        ("bots echo", "SMS_ADAPTER_BOTS 'bots echo': 'bots echo' is not a bot: write package."),
        (
            f"15550001111={ECHO}",
            "item '15550001111=bots.echo:router': '15550001111' is not a route key",
        ),
        (
            f"+1 555 000 1111={ECHO}",
            "'+1 555 000 1111' is not a route key: a key is one of our numbers",
        ),
        (f"+0123={ECHO}", "'+0123' is not a route key"),
        (f"MG123={ECHO}", "'MG123' is not a route key"),
        (f"{SERVICE.upper()}={ECHO}", "is not a route key"),
        (f"{NUMBER}=", f"item '{NUMBER}=': no bot after =, like bots.echo:router"),
        (f"={ECHO}", "item '=bots.echo:router': the key before = is empty"),
        (
            f"{NUMBER}=bots.echo:router:x",
            "'bots.echo:router:x' is not a bot: write package.module:attribute",
        ),
        (
            f"{NUMBER}={ECHO},{HELP_DESK}",
            "item 'bots.help_desk:router': write KEY=BOT, like *=bots.echo:router",
        ),
        (f"*={ECHO},*={HELP_DESK}", "SMS_ADAPTER_BOTS: two routes for the default (*)"),
        (f"{NUMBER}={ECHO},{NUMBER}={HELP_DESK}", f"SMS_ADAPTER_BOTS: two routes for {NUMBER}"),
    ],
)
def test_bad_bot_settings_name_the_setting_and_the_item(value: str, message: str) -> None:
    with pytest.raises(BotConfigError, match=re.escape(message)):
        parse_routes(value)


def test_a_bot_framework_url_in_an_error_is_shown_without_its_secrets() -> None:
    value = "x=botframework+https://user:hunter2@bot.example.com/api/messages?code=s3cret"
    with pytest.raises(BotConfigError) as failure:
        parse_routes(value)
    text = str(failure.value)
    assert "'x=botframework+https://bot.example.com/...'" in text
    assert "hunter2" not in text and "s3cret" not in text


# --- [[routes]] in a config file -------------------------------------------------


def toml_routes(text: str) -> list[RouteSpec]:
    return routes_from_toml(tomllib.loads(textwrap.dedent(text)))


def test_routes_from_a_config_file() -> None:
    specs = toml_routes(
        f"""
        [[routes]]
        number = "{NUMBER}"
        bot = "{HELP_DESK}"
        send_via_messaging_service = "{SERVICE}"

        [[routes]]
        messaging_service_sid = "{SERVICE}"
        bot = "{ECHO}"

        [[routes]]
        default = true
        bot = " {ECHO} "
        """
    )
    assert specs == [
        RouteSpec(NUMBER, HELP_DESK, SERVICE),
        RouteSpec(SERVICE, ECHO),
        RouteSpec("*", ECHO),
    ]


def test_routes_as_settings_keeps_them() -> None:
    # adapter.runtime.settings keeps the [[routes]] tables as a tuple of dicts.
    assert routes_from_toml({"routes": ({"default": True, "bot": ECHO},)}) == [RouteSpec("*", ECHO)]


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ("", "the config file needs at least one [[routes]] table"),
        ("routes = []", "the config file needs at least one [[routes]] table"),
        (
            f'[[routes]]\nbot = "{ECHO}"',
            "[[routes]] #1: give exactly one of number, messaging_service_sid or default = true",
        ),
        (
            f'[[routes]]\nnumber = "{NUMBER}"\ndefault = true\nbot = "{ECHO}"',
            "[[routes]] #1: give exactly one of",
        ),
        (f'[[routes]]\ndefault = false\nbot = "{ECHO}"', "[[routes]] #1: default must be true"),
        (
            f'[[routes]]\nnumber = 15550001111\nbot = "{ECHO}"',
            "[[routes]] #1: number must be a string",
        ),
        (
            f'[[routes]]\nnumber = "555-0001"\nbot = "{ECHO}"',
            "[[routes]] #1: number '555-0001' is not valid; a key is",
        ),
        (
            f'[[routes]]\nmessaging_service_sid = "{NUMBER}"\nbot = "{ECHO}"',
            f"messaging_service_sid '{NUMBER}' is not valid",
        ),
        (
            f'[[routes]]\nnumber = "{NUMBER}"',
            '[[routes]] #1: needs bot = "package.module:attribute"',
        ),
        (
            f'[[routes]]\nnumber = "{NUMBER}"\nbot = "echo.py"',
            "[[routes]] #1: 'echo.py' names a file: write the module, like echo:router",
        ),
        (
            f'[[routes]]\nnumber = "{NUMBER}"\nbott = "{ECHO}"',
            "[[routes]] #1: unknown key bott; expected bot, number",
        ),
        (
            f'[[routes]]\ndefault = true\nbot = "{ECHO}"\nsend_via_messaging_service = "MG1"',
            "[[routes]] #1: send_via_messaging_service 'MG1' is not a Messaging Service SID",
        ),
        (
            f'[[routes]]\ndefault = true\nbot = "{ECHO}"\n'
            f'[[routes]]\ndefault = true\nbot = "{ECHO}"',
            "[[routes]]: two routes for the default (*)",
        ),
        (
            f'[[routes]]\ndefault = true\nbot = "{ECHO}"\n[[routes]]\nnumber = "x"\nbot = "{ECHO}"',
            "[[routes]] #2: number 'x' is not valid",
        ),
    ],
)
def test_bad_route_tables_are_named_by_their_position(tables: str, message: str) -> None:
    with pytest.raises(BotConfigError, match=re.escape(message)):
        toml_routes(tables)


def test_a_route_gives_every_reply_its_send_options() -> None:
    [spec] = toml_routes(
        f"""
        [[routes]]
        default = true
        bot = "{ECHO}"
        send_via_messaging_service = "{SERVICE}"

        [routes.send]
        validity_period = 600
        smart_encoded = true
        shorten_urls = true
        max_price = "0.05"
        """
    )
    assert spec.send == SendOptions(
        validity_period=600, smart_encoded=True, shorten_urls=True, max_price="0.05"
    )
    route = table(spec).resolve(NUMBER, None)
    assert route is not None and route.send_defaults == spec.send


@pytest.mark.parametrize(
    ("send", "message"),
    [
        ("validity_period = 0", "[[routes]] #1: validity_period: 0 s is outside"),
        ("validity = 600", "[[routes]] #1: send.validity: unknown send option"),
        ("max_price = 0.05", '[[routes]] #1: max_price: must be a decimal string like "0.05"'),
        (
            "send_at = 2027-01-05T09:00:00Z",
            "[[routes]] #1: send.send_at: a fixed time cannot be a default",
        ),
        ("shorten_urls = true", "send.shorten_urls works only through a Messaging Service"),
        ('content_sid = "HX1"', "[[routes]] #1: content_sid: 'HX1' is not a Content SID"),
    ],
)
def test_bad_route_send_options_are_named(send: str, message: str) -> None:
    with pytest.raises(BotConfigError, match=re.escape(message)):
        toml_routes(f'[[routes]]\ndefault = true\nbot = "{ECHO}"\n[routes.send]\n{send}')


# --- the route table -------------------------------------------------------------


def table(*specs: RouteSpec) -> RouteTable:
    return load_route_table(specs)


@pytest.mark.parametrize(
    ("to", "service", "expected"),
    [
        (NUMBER, None, "number"),
        (NUMBER, SERVICE, "number"),  # the exact number wins over its service
        (OTHER_NUMBER, SERVICE, "service"),
        (OTHER_NUMBER, OTHER_SERVICE, "default"),
        (OTHER_NUMBER, None, "default"),
        (f"whatsapp:{NUMBER}", None, "whatsapp"),
        (f"whatsapp:{OTHER_NUMBER}", None, "default"),
    ],
)
def test_a_text_goes_to_its_number_then_its_service_then_the_default(
    to: str, service: str | None, expected: str
) -> None:
    routes = table(
        RouteSpec("*", ECHO),
        RouteSpec(SERVICE, ECHO),
        RouteSpec(NUMBER, ECHO),
        RouteSpec(f"whatsapp:{NUMBER}", ECHO),
    )
    names = {"*": "default", SERVICE: "service", NUMBER: "number", f"whatsapp:{NUMBER}": "whatsapp"}
    route = routes.resolve(to, service)
    assert route is not None
    assert names[route.name] == expected


def test_without_a_default_an_unknown_number_has_no_route() -> None:
    routes = table(RouteSpec(NUMBER, ECHO), RouteSpec(SERVICE, ECHO))
    assert routes.resolve(OTHER_NUMBER, None) is None
    assert routes.resolve(OTHER_NUMBER, OTHER_SERVICE) is None


def test_a_route_carries_its_bot_and_spec() -> None:
    routes = table(RouteSpec(NUMBER, HELP_DESK), RouteSpec("*", ECHO))
    route = routes.resolve(NUMBER, None)
    assert route == Route(name=NUMBER, router=bots.help_desk.router, bot_name=HELP_DESK)
    assert [r.name for r in routes.routes] == [NUMBER, "*"]


def test_routes_naming_the_same_bot_share_one_router() -> None:
    routes = table(
        RouteSpec(NUMBER, "bots.echo"), RouteSpec(SERVICE, "bots.echo"), RouteSpec("*", ECHO)
    )
    first, second, default = (r.router for r in routes.routes)
    assert first is second is default is bots.echo.router


@pytest.mark.parametrize(
    ("send_via", "expected"),
    [(None, (NUMBER, None)), (SERVICE, (None, SERVICE))],
)
def test_replies_come_from_the_number_texted_unless_sent_via_a_service(
    send_via: str | None, expected: tuple[str | None, str | None]
) -> None:
    route = table(RouteSpec("*", ECHO, send_via)).resolve(NUMBER, None)
    assert route is not None
    assert route.reply_sender(NUMBER) == expected


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "no bot routes are configured"),
        ([RouteSpec(NUMBER, ECHO), RouteSpec(NUMBER, HELP_DESK)], f"two routes for {NUMBER}"),
        ([RouteSpec("*", "bots.nope:router")], "cannot import 'bots.nope'"),
        ([RouteSpec("*", "botframework+ftp://bot.example.com/api")], "an absolute http(s) URL"),
    ],
)
def test_a_route_table_that_cannot_work_is_refused(specs: list[RouteSpec], message: str) -> None:
    with pytest.raises(BotConfigError, match=re.escape(message)):
        load_route_table(specs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("+1", ECHO), "'+1' is not a route key"),
        ((NUMBER, "not a spec"), "'not a spec' is not a bot"),
        ((NUMBER, ECHO, "MG"), "send_via_messaging_service 'MG' is not a Messaging Service SID"),
    ],
)
def test_a_route_spec_is_checked_when_made(
    args: tuple[str, str, *tuple[str, ...]], message: str
) -> None:
    with pytest.raises(BotConfigError, match=re.escape(message)):
        RouteSpec(*args)


# --- from settings ---------------------------------------------------------------


def test_the_bots_setting_builds_the_table() -> None:
    routes = build_route_table(Settings(bots=f"{NUMBER}={HELP_DESK},*={ECHO}"))
    assert [(r.name, r.router) for r in routes.routes] == [
        (NUMBER, bots.help_desk.router),
        ("*", bots.echo.router),
    ]


def test_config_file_routes_replace_the_bots_setting() -> None:
    settings = Settings(bots=ECHO, routes=({"number": NUMBER, "bot": HELP_DESK},))
    assert [r.name for r in build_route_table(settings).routes] == [NUMBER]


def test_a_bad_bots_setting_is_a_config_error_the_command_line_reports() -> None:
    with pytest.raises(ConfigError, match="SMS_ADAPTER_BOTS: several bots need a key each"):
        build_route_table(Settings(bots=f"{ECHO},{HELP_DESK}"))


def test_a_bot_in_the_current_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The `sms-adapter` script does not put the current directory on the path by itself.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    name = f"mybot_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text("async def handle(ctx):\n    await ctx.reply('mine')\n")
    routes = build_route_table(Settings(bots=f"{name}:handle"))
    assert BotConversation(routes.routes[0].router).say("hi") == ["mine"]
    sys.modules.pop(name, None)


# --- loading a bot ---------------------------------------------------------------


def test_load_bot_returns_the_modules_router() -> None:
    assert load_bot(ECHO) is bots.echo.router
    assert load_bot(" bots.help_desk ") is bots.help_desk.router  # `router` when unnamed


def test_a_module_level_handler_function_becomes_a_bot(bot_module: Callable[[str], str]) -> None:
    name = bot_module(
        """
        async def handle(ctx):
            await ctx.reply("got " + ctx.text)
        """
    )
    router = load_bot(f"{name}:handle")
    assert isinstance(router, Router)
    assert BotConversation(router).say("anything") == ["got anything"]


def test_a_router_may_sit_inside_an_object(bot_module: Callable[[str], str]) -> None:
    name = bot_module(
        """
        from adapter.bot.router import Router

        class Bots:
            support = Router("support")
        """
    )
    assert load_bot(f"{name}:Bots.support").name == "support"


@pytest.mark.parametrize(
    ("source", "attribute", "message"),
    [
        (
            "from adapter.bot.router import Router\nmain = Router()\n",
            "routr",
            "has no 'routr'; its Routers: main",
        ),
        ("x = 1\n", "router", "has no 'router'"),
        ("ORDERS = {}\n", "ORDERS", "ORDERS is a dict, not a Router or a handler function"),
        ("raise KeyError('TOKEN')\n", "router", "raised KeyError: 'TOKEN'"),
        ("import no_such_dependency_xyz\n", "router", "No module named 'no_such_dependency_xyz'"),
    ],
)
def test_a_bot_that_cannot_load_is_named_with_the_reason(
    bot_module: Callable[[str], str], source: str, attribute: str, message: str
) -> None:
    name = bot_module(source)
    spec = f"{name}:{attribute}"
    with pytest.raises(BotConfigError, match=re.escape(message)) as failure:
        load_bot(spec)
    assert f"bot {spec!r}: " in str(failure.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "bots.nope:router",
            "bot 'bots.nope:router': cannot import 'bots.nope': No module named 'bots.nope'; "
            "is it on the Python path",
        ),
        (
            "nope_xyz",
            "cannot import 'nope_xyz': No module named 'nope_xyz'; is it on the Python path",
        ),
        ("bots/echo.py", "'bots/echo.py' names a file: write the module, like bots.echo:router"),
        (
            "bots-echo:router",
            "'bots-echo:router' is not a bot: write package.module:attribute, like",
        ),
        ("", "'' is not a bot"),
        (
            "botframework+ftp://bot.example.com/api/messages?code=s3cret",
            "bot 'botframework+ftp://bot.example.com/...': a Bot Framework bot is "
            "botframework+ and its messaging endpoint",
        ),
    ],
)
def test_load_bot_errors(spec: str, message: str) -> None:
    with pytest.raises(BotConfigError, match=re.escape(message)) as failure:
        load_bot(spec)
    assert "s3cret" not in str(failure.value)


def test_a_missing_dependency_is_not_blamed_on_the_python_path(
    bot_module: Callable[[str], str],
) -> None:
    name = bot_module("import no_such_dependency_xyz\n")
    with pytest.raises(BotConfigError) as failure:
        load_bot(name)
    assert "Python path" not in str(failure.value)
