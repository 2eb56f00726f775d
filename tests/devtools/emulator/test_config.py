"""EmulatorConfig refuses accounts that cannot work and never shows its secrets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.devtools.emulator.conftest import AUTH_TOKEN, make_config


def test_repr_hides_every_secret() -> None:
    config = make_config(api_keys={"SK" + "1" * 32: "key-secret"}, webhook_shared_key="shared")

    shown = repr(config)

    assert config.account_sid in shown
    for secret in (AUTH_TOKEN, "key-secret", "shared"):
        assert secret not in shown


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"account_sid": "XX" + "1" * 32}, id="not-an-account-sid"),
        pytest.param({"auth_token": ""}, id="empty-token"),
        pytest.param({"numbers": []}, id="no-numbers"),
        pytest.param({"numbers": ["15005550006"]}, id="number-not-e164"),
        pytest.param({"latency_ms": -1}, id="negative-latency"),
        pytest.param({"callback_delay_ms": -1}, id="negative-callback-delay"),
    ],
)
def test_unworkable_configs_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_config(**overrides)
