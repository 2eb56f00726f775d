"""`sms-adapter dev` as a user runs it: it prints the console's URL, and the URL works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.servers import bound_socket, wait_until_answering


def test_dev_prints_the_console_url_and_serves_the_console_there(tmp_path: Path) -> None:
    sock, base = bound_socket()
    port = sock.getsockname()[1]
    sock.close()  # dev binds the port itself
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env["SMS_ADAPTER_DATABASE"] = str(tmp_path / "cli.sqlite3")
    process = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "dev", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_answering(process, f"{base}/readyz")
        page = httpx.get(f"{base}/console", timeout=5)
        script = httpx.get(f"{base}/console/console.js", timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert f"{base}/console\n" in stdout
    assert page.status_code == 200 and "dev console" in page.text
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "Traceback" not in stderr
