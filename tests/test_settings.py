"""Settings from the environment and TOML: defaults, validation that names the setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapter.config_error import ConfigError
from adapter.runtime.settings import SPECS, Settings, load_settings


def test_defaults() -> None:
    settings, warnings = load_settings({})
    assert settings == Settings()
    assert warnings == []
    assert settings.rate_limit == "1200/60s"
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


def test_values_checked_at_load_keep_their_text() -> None:
    environ = {"SMS_ADAPTER_RATE_LIMIT": " 10/1s ", "SMS_ADAPTER_TRUSTED_PROXIES": "*"}
    settings, _ = load_settings(environ)
    assert (settings.rate_limit, settings.trusted_proxies) == ("10/1s", "*")


def test_secret_values_stay_out_of_repr() -> None:
    # A secret is never echoed, even when it is the invalid value.
    settings, _ = load_settings({"SMS_ADAPTER_ADMIN_TOKEN": "s3cret-admin"})
    assert "s3cret-admin" not in repr(settings)
    assert settings.secrets() == ["s3cret-admin"]


def test_unknown_prefixed_variables_are_reported() -> None:
    _, warnings = load_settings({"SMS_ADAPTER_PUBLIC_ULR": "https://x.example.com"})
    assert warnings == ["unknown setting SMS_ADAPTER_PUBLIC_ULR ignored (a typo?)"]


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


def test_every_setting_is_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [spec.env for spec in SPECS if f"`{spec.env}`" not in readme]
    assert missing == []
