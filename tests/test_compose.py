"""docker-compose.yml, checked without a Docker engine: against the Compose
Specification's JSON schema (vendored in tests/compose_spec/), and against this
project: every command a real `sms-adapter` command line, every setting a known one with
a valid value, and the services wired to each other."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from adapter.cli import build_parser
from adapter.runtime.settings import SPECS, load_settings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
KNOWN_SETTINGS = {spec.env for spec in SPECS}


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def our_services() -> dict[str, dict[str, Any]]:
    """The services that run an `sms-adapter` command."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("command", [None])[0] == "sms-adapter"
    }


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


# A schema that accepted anything would make the test above worthless.
BROKEN: dict[str, tuple[str, Any]] = {
    "misspelt key": ("services/adapter/comand", ["sms-adapter", "serve"]),
    "replicas not a number": ("services/adapter/deploy/replicas", {"many": True}),
    "port not a port": ("services/emulator/ports", [{"target": [8001]}]),
    "unknown top-level key": ("servics", {}),
}


@pytest.mark.parametrize(("path", "value"), list(BROKEN.values()), ids=list(BROKEN))
def test_the_schema_catches_a_broken_file(path: str, value: Any) -> None:
    broken = copy.deepcopy(compose())
    *parents, key = path.split("/")
    target = broken
    for parent in parents:
        target = target[parent]
    target[key] = value

    assert schema_errors(broken) != []


def test_postgres_two_adapter_replicas_and_the_emulator_are_there() -> None:
    services = compose()["services"]
    commands = {name: service["command"][:2] for name, service in our_services().items()}

    assert commands == {
        "adapter": ["sms-adapter", "serve"],
        "emulator": ["sms-adapter", "emulator"],
    }
    assert services["adapter"]["deploy"]["replicas"] == 2
    assert services["postgres"]["image"].startswith("postgres:")


@pytest.mark.parametrize("service", ["adapter", "emulator"])
def test_each_command_is_one_the_cli_accepts(service: str) -> None:
    command = our_services()[service]["command"]

    # argparse exits (SystemExit) on an unknown subcommand or option.
    arguments = build_parser().parse_args(command[1:])

    assert arguments.command == command[1]


@pytest.mark.parametrize("service", ["adapter", "emulator"])
def test_each_setting_is_a_known_one_with_a_valid_value(service: str) -> None:
    environment = {
        name: str(value) for name, value in our_services()[service]["environment"].items()
    }

    assert set(environment) <= KNOWN_SETTINGS
    settings, warnings = load_settings(environment)  # ConfigError on a bad value
    assert warnings == []
    settings.require_credentials()


def test_the_services_are_wired_to_each_other() -> None:
    services = compose()["services"]
    adapter, emulator = services["adapter"], services["emulator"]
    postgres_env = services["postgres"]["environment"]
    database = urlsplit(adapter["environment"]["SMS_ADAPTER_DATABASE"])
    twilio = urlsplit(adapter["environment"]["SMS_ADAPTER_TWILIO_BASE_URL"])
    public = urlsplit(adapter["environment"]["SMS_ADAPTER_PUBLIC_URL"])
    webhook = urlsplit(option(emulator["command"], "--webhook-url"))

    assert database.scheme == "postgresql"
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert (database.username, database.password, database.path) == (
        postgres_env["POSTGRES_USER"],
        postgres_env["POSTGRES_PASSWORD"],
        "/" + postgres_env["POSTGRES_DB"],
    )
    assert (twilio.hostname, twilio.port) == (
        "emulator",
        int(option(emulator["command"], "--port")),
    )
    adapter_port = int(option(adapter["command"], "--port"))
    assert (webhook.hostname, webhook.port, webhook.path) == ("adapter", adapter_port, "/api/sms")
    # Signatures are checked against the public URL: it must be the URL the emulator signs.
    assert (public.hostname, public.port) == (webhook.hostname, webhook.port)
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        assert adapter["environment"][name] == emulator["environment"][name]
    assert adapter["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_image_is_built_from_this_repository() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    copied = [line.split()[1:-1] for line in dockerfile if line.startswith("COPY ")]

    for service in our_services().values():
        assert service["build"] == "."
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is missing"
