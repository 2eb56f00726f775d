"""Settings from the environment and TOML: defaults, validation that names the setting."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path

import pytest

from adapter.config_error import ConfigError
from adapter.long_messages import LongMessages
from adapter.ratelimit import Rate
from adapter.runtime.settings import SPECS, Settings, load_settings


def test_defaults() -> None:
    settings, warnings = load_settings({})
    assert settings == Settings()
    assert warnings == []
    assert settings.rate_limit == Rate(1200, 60.0)
    assert settings.send_max_age == timedelta(hours=4)
    assert settings.status_refresh_after == timedelta(minutes=10)
    assert settings.retention == timedelta(days=30)
    assert settings.trusted_proxies == (
        ipaddress.ip_network("127.0.0.1"),
        ipaddress.ip_network("::1"),
    )
    assert settings.botframework_issuer == ()
    assert settings.validate_signatures is True


def test_environment_overrides_toml(tmp_path: Path) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text('public_url = "https://from-file.example.com"\nmax_concurrency = 7\n')
    settings, _ = load_settings({"SMS_ADAPTER_PUBLIC_URL": "https://from-env.example.com/"}, config)
    assert settings.public_url == "https://from-env.example.com"
    assert settings.max_concurrency == 7


def test_toml_routes(tmp_path: Path) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text('[[routes]]\nnumber = "+15550001111"\nbot = "bots.echo:router"\n')
    settings, _ = load_settings({}, config)
    assert settings.routes == ({"number": "+15550001111", "bot": "bots.echo:router"},)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SMS_ADAPTER_PUBLIC_URL": "bot.example.com"}, "SMS_ADAPTER_PUBLIC_URL"),
        ({"SMS_ADAPTER_PUBLIC_URL": "https://x.example.com/?a=1"}, "without a query"),
        ({"SMS_ADAPTER_MAX_CONCURRENCY": "0"}, "SMS_ADAPTER_MAX_CONCURRENCY"),
        ({"SMS_ADAPTER_MAX_CONCURRENCY": "many"}, "SMS_ADAPTER_MAX_CONCURRENCY"),
        ({"SMS_ADAPTER_VALIDATE_SIGNATURES": "perhaps"}, "SMS_ADAPTER_VALIDATE_SIGNATURES"),
        ({"SMS_ADAPTER_LOG_LEVEL": "loud"}, "SMS_ADAPTER_LOG_LEVEL"),
        ({"SMS_ADAPTER_SENDER_MPS": "-1"}, "SMS_ADAPTER_SENDER_MPS"),
        ({"SMS_ADAPTER_RATE_LIMIT": "fast"}, "SMS_ADAPTER_RATE_LIMIT 'fast'"),
        ({"SMS_ADAPTER_SEND_MAX_AGE": "soon"}, "SMS_ADAPTER_SEND_MAX_AGE 'soon'"),
        ({"SMS_ADAPTER_STATUS_REFRESH_AFTER": "ten minutes"}, "SMS_ADAPTER_STATUS_REFRESH_AFTER"),
        ({"SMS_ADAPTER_TRUSTED_PROXIES": "10.0.0.0/8,proxy"}, "trusted proxy 'proxy'"),
        ({"SMS_ADAPTER_STATUS_VIA_APPLICATION": "MG123"}, "SMS_ADAPTER_STATUS_VIA_APPLICATION"),
        ({"SMS_ADAPTER_RETENTION": "forever"}, "SMS_ADAPTER_RETENTION 'forever'"),
        ({"SMS_ADAPTER_RETENTION": "0"}, "SMS_ADAPTER_RETENTION"),
    ],
)
def test_bad_values_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        load_settings(environ)


def test_a_bad_value_in_the_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text('rate_limit = "lots"\n')
    with pytest.raises(ConfigError, match=re.escape(f"SMS_ADAPTER_RATE_LIMIT 'lots' ({config})")):
        load_settings({}, config)


def test_values_are_parsed_once_at_load() -> None:
    environ = {
        "SMS_ADAPTER_RATE_LIMIT": " 10/1s ",
        "SMS_ADAPTER_SEND_MAX_AGE": "90s",
        "SMS_ADAPTER_STATUS_REFRESH_AFTER": "2m",
        "SMS_ADAPTER_TRUSTED_PROXIES": "10.0.0.1/8, ::1",
        "SMS_ADAPTER_BOTFRAMEWORK_ISSUER": "https://a.example.com, https://b.example.com,",
    }
    settings, _ = load_settings(environ)
    assert settings.rate_limit == Rate(10, 1.0)
    assert settings.send_max_age == timedelta(seconds=90)
    assert settings.status_refresh_after == timedelta(minutes=2)
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    assert settings.botframework_issuer == ("https://a.example.com", "https://b.example.com")


def test_settings_built_directly_parse_text_given_for_typed_values() -> None:
    settings = Settings(
        rate_limit="10/s",  # type: ignore[arg-type]
        send_max_age="1s",  # type: ignore[arg-type]
        trusted_proxies="*",  # type: ignore[arg-type]
        long_messages="truncate",  # type: ignore[arg-type]
        port="8080",  # type: ignore[arg-type]
        public_url="https://bot.example.com/",  # text settings are kept as given
    )
    assert settings.rate_limit == Rate(10, 1.0)
    assert settings.send_max_age == timedelta(seconds=1)
    assert len(settings.trusted_proxies) == 2  # every IPv4 and every IPv6 peer
    assert settings.long_messages is LongMessages.TRUNCATE
    assert settings.port == 8080
    assert settings.public_url == "https://bot.example.com/"
    assert Settings(rate_limit=Rate(10, 1.0)) == Settings(rate_limit="10/1s")  # type: ignore[arg-type]


def test_text_that_does_not_parse_names_the_setting_when_built_directly() -> None:
    with pytest.raises(ConfigError, match="SMS_ADAPTER_STATUS_REFRESH_AFTER 'soon' is invalid"):
        Settings(status_refresh_after="soon")  # type: ignore[arg-type]


def test_secret_values_stay_out_of_repr() -> None:
    # A secret is never echoed, even when it is the invalid value.
    settings, _ = load_settings({"SMS_ADAPTER_ADMIN_TOKEN": "s3cret-admin"})
    assert "s3cret-admin" not in repr(settings)
    assert settings.secrets() == ["s3cret-admin"]


def test_unknown_prefixed_variables_are_reported() -> None:
    _, warnings = load_settings({"SMS_ADAPTER_PUBLIC_ULR": "https://x.example.com"})
    assert warnings == [
        "unknown setting SMS_ADAPTER_PUBLIC_ULR ignored (did you mean SMS_ADAPTER_PUBLIC_URL?)"
    ]


def test_an_unknown_name_far_from_any_known_one_gets_no_guess() -> None:
    _, warnings = load_settings({"SMS_ADAPTER_COLOUR": "blue"})
    assert warnings == ["unknown setting SMS_ADAPTER_COLOUR ignored (a typo?)"]


def test_every_bad_value_is_reported_at_once_with_what_is_expected() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(
            {
                "TWILIO_ACCOUNT_SID": "AC-not-a-sid",
                "SMS_ADAPTER_PORT": "80x",
                "SMS_ADAPTER_SEND_MAX_AGE": "soon",
                "SMS_ADAPTER_MAX_CONCURRENCY": "0",
            }
        )
    problems = raised.value.problems
    assert len(problems) == 4, problems
    assert (
        "TWILIO_ACCOUNT_SID 'AC-not-a-sid' (environment) is invalid: expected AC followed by 32"
        in (problems[0])
    )
    assert any("SMS_ADAPTER_PORT '80x'" in p and "expected a whole number" in p for p in problems)
    assert any("SMS_ADAPTER_SEND_MAX_AGE 'soon'" in p for p in problems)
    assert "invalid literal" not in str(raised.value)
    assert str(raised.value).startswith("4 settings cannot be used:")


def test_plain_http_public_url_off_this_machine_is_warned_about() -> None:
    _, warnings = load_settings({"SMS_ADAPTER_PUBLIC_URL": "http://bot.example.com"})
    assert len(warnings) == 1 and "plain http" in warnings[0]
    _, warnings = load_settings({"SMS_ADAPTER_PUBLIC_URL": "http://127.0.0.1:8000"})
    assert warnings == []
    with_emulator = {
        "SMS_ADAPTER_PUBLIC_URL": "http://adapter:8000",
        "SMS_ADAPTER_TWILIO_BASE_URL": "http://emulator:8001",
    }
    assert load_settings(with_emulator)[1] == []


def test_unknown_toml_keys_are_reported(tmp_path: Path) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text('publik_url = "https://x.example.com"\n')
    _, warnings = load_settings({}, config)
    assert "publik_url" in warnings[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("public_url = ", "not valid TOML"),
        ("routes = 3", "array of tables"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str | None, message: str) -> None:
    config = tmp_path / "adapter.toml"
    if content is not None:
        config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings({}, config)


def _readme_settings_table() -> dict[str, str]:
    """The README's settings table: each setting's name and its default as shown."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", section, flags=re.MULTILINE)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a setting has two rows"
    return {name: default.strip() for name, default in rows}


def test_the_readme_documents_exactly_the_declared_settings() -> None:
    table = _readme_settings_table()
    declared = {spec.env for spec in SPECS}
    assert sorted(declared - table.keys()) == [], "declared but missing from the README"
    assert sorted(table.keys() - declared) == [], "in the README but not declared"


def test_the_readme_shows_the_declared_defaults() -> None:
    table = _readme_settings_table()
    shown = {spec.env: table[spec.env].replace("`", "") for spec in SPECS if spec.env in table}
    assert shown == {spec.env: spec.default_text for spec in SPECS}


def test_with_a_twiml_app_sends_carry_no_status_callback() -> None:
    app = "AP" + "a" * 32
    with_url, _ = load_settings({"SMS_ADAPTER_PUBLIC_URL": "https://bot.example.com"})
    with_app, _ = load_settings(
        {
            "SMS_ADAPTER_PUBLIC_URL": "https://bot.example.com",
            "SMS_ADAPTER_STATUS_VIA_APPLICATION": app,
        }
    )
    assert with_url.status_callback_url == "https://bot.example.com/api/sms/status"
    assert (with_app.status_callback_url, with_app.status_via_application) == (None, app)
