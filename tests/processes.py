"""`sms-adapter serve` and `sms-adapter emulator` as subprocesses on loopback, for tests
that must kill a process outright (SIGKILL) and start it again.

    emulator = emulator_process(port, webhook_url=..., account=..., log_dir=tmp_path)
    emulator.start()
    await emulator.wait_ready()
    ...
    emulator.stop()  # in a finally: always

Each process writes its output to a file in `log_dir`; `log_tail()` shows the end of it
when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

REPOSITORY = Path(__file__).resolve().parents[1]
# Settings of the outer environment must not leak into a test's processes.
_SETTING_PREFIXES = ("SMS_ADAPTER_", "TWILIO_")


def free_port() -> int:
    """A loopback port nothing listens on now. A process started on it may, rarely, find
    it taken meanwhile; unlike `tests.servers.bound_socket` the port must outlive a
    process, because a restarted adapter has to come back on the same one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Account:
    """The Twilio account the emulator emulates and the adapter uses."""

    sid: str
    auth_token: str


@dataclass
class Service:
    """One `sms-adapter` command, started and stopped as a subprocess."""

    name: str
    args: list[str]
    env: dict[str, str]
    url: str
    ready_path: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        self._close_log()
        self._log = self.log_path.open("ab")
        self._log.write(f"\n--- start #{self.starts} ---\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "adapter.cli", *self.args],
            env=self.env,
            cwd=REPOSITORY,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Until `ready_path` answers 200; fails at once if the process exits."""
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=2) as client:
            while True:
                if not self.running:
                    raise AssertionError(f"{self.name} exited during start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(self.url + self.ready_path)).status_code == 200:
                        return
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine loses power."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if the process has not ended within `grace` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def log_tail(self, lines: int = 40) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _environment(settings: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTING_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def emulator_process(
    port: int,
    *,
    account: Account,
    webhook_url: str,
    numbers: list[str],
    log_dir: Path,
    latency_ms: int = 0,
    faults: str = "",
    extra_args: Sequence[str] = (),
) -> Service:
    args = ["emulator", "--host", "127.0.0.1", "--port", str(port), *extra_args]
    args += ["--webhook-url", webhook_url, "--latency-ms", str(latency_ms)]
    for number in numbers:
        args += ["--number", number]
    if faults:
        args += ["--faults", faults]
    return Service(
        name="emulator",
        args=args,
        env=_environment(
            {
                "TWILIO_ACCOUNT_SID": account.sid,
                "TWILIO_AUTH_TOKEN": account.auth_token,
                "SMS_ADAPTER_LOG_LEVEL": "warning",
            }
        ),
        url=f"http://127.0.0.1:{port}",
        ready_path="/_emulator/messages",
        log_path=log_dir / "emulator.log",
    )


def adapter_process(
    port: int,
    *,
    account: Account,
    twilio_base_url: str,
    database: Path,
    bots: str,
    log_dir: Path,
    settings: Mapping[str, str] | None = None,
    config: Path | None = None,
) -> Service:
    """`sms-adapter serve`, configured from the environment (and `config`, a TOML file
    given with --config, for what only a file can say: [[routes]] tables)."""
    url = f"http://127.0.0.1:{port}"
    env = {
        "TWILIO_ACCOUNT_SID": account.sid,
        "TWILIO_AUTH_TOKEN": account.auth_token,
        "SMS_ADAPTER_TWILIO_BASE_URL": twilio_base_url,
        "SMS_ADAPTER_PUBLIC_URL": url,
        "SMS_ADAPTER_DATABASE": str(database),
        "SMS_ADAPTER_BOTS": bots,
        "SMS_ADAPTER_HOST": "127.0.0.1",
        "SMS_ADAPTER_PORT": str(port),
        **(settings or {}),
    }
    return Service(
        name="adapter",
        args=["serve", *(["--config", str(config)] if config is not None else [])],
        env=_environment(env),
        url=url,
        ready_path="/readyz",
        log_path=log_dir / "adapter.log",
    )
