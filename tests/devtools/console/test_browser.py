"""The console in a real headless Chromium, against the dev app on real sockets: text the
bot, watch its reply reach "delivered", open a seeded conversation's history, read the
exchange log, get refused for bad input, and come back by itself after a restart.

Needs Debian's `chromium` at /usr/bin/chromium (`.ci/run` installs it) and Playwright's
Python package (the `test` extra); Playwright's own browser downloads are not used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.cli.dev import DEV_NUMBER, create_dev_app
from adapter.runtime.settings import Settings
from tests.devtools.console.conftest import DevServer
from tests.processes import free_port
from tests.servers import serve

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
        allow_module_level=True,
    )
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright is not installed (pip install -e '.[test]')"
)
expect = playwright_api.expect

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# The README's picture of the console; refreshed only when asked, so a test run leaves
# the work tree as it found it.
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "console.png"
UPDATE_SCREENSHOT = os.environ.get("SMS_ADAPTER_UPDATE_SCREENSHOT") == "1"
PERSON = "+15551234567"
SEEDED_PERSON = "+15557654321"

expect.set_options(timeout=10_000)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1000, "height": 640})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        await context.close()  # before the server stops: its event stream ends with it
    assert errors == [], f"the page's JavaScript failed: {errors}"


async def test_text_the_bot_see_it_delivered_and_open_a_seeded_history(
    dev_server: DevServer, page: Any
) -> None:
    base = dev_server.base
    async with httpx.AsyncClient(timeout=10) as client:
        seeded = await client.post(
            f"{base}/_emulator/seed",
            json={"ours": DEV_NUMBER, "person": SEEDED_PERSON, "count": 6},
        )
        assert seeded.status_code == 200

    await page.goto(f"{base}/console")
    await expect(page.locator("#connection")).to_have_text("live")
    await expect(page.locator("#person")).to_have_value(PERSON)

    await page.locator("#body").fill("hello")
    await page.locator("#body").press("Enter")  # Enter sends
    mine = page.locator("#thread li.inbound", has_text="hello")
    reply = page.locator("#thread li.outbound", has_text="You said: hello")
    await expect(mine).to_be_visible()
    await expect(reply.locator(".status")).to_have_text("delivered")
    await expect(page.locator("#body")).to_have_value("")

    # The exchange log: the webhook that carried "hello", its signature checked.
    webhook = page.locator("#exchanges tbody tr", has_text="/api/sms").filter(has_text="valid")
    await expect(webhook.first).to_be_visible()
    await webhook.first.click()
    await expect(page.locator("#exchange-detail .request-body")).to_contain_text("Body: hello")
    await expect(page.locator("#exchange-detail")).not_to_contain_text("dev-auth-token")

    shot = await page.screenshot(path=str(SCREENSHOT) if UPDATE_SCREENSHOT else None)
    assert shot.startswith(b"\x89PNG")  # the page rendered

    seeded_chat = page.locator(f'#conversations button[data-person="{SEEDED_PERSON}"]')
    await seeded_chat.click()
    bubbles = page.locator("#thread li")
    await expect(bubbles).to_have_count(6)
    await expect(bubbles.first).to_contain_text("Seeded message 1 of 6")
    await expect(bubbles.last).to_contain_text("Seeded message 6 of 6")
    await expect(bubbles.last.locator(".status")).to_have_text("delivered")
    await expect(page.locator("#person")).to_have_value(SEEDED_PERSON)


BAD_INPUT = [
    # (person, body, media URLs, the reason shown)
    ("+1555", "hi", "", "is not an E.164 number"),
    ("", "hi", "", "Enter the person's number"),
    (PERSON, "   ", "", "The message is empty"),
    (PERSON, "hi", "ftp://example.com/a.png", "is not an http(s) URL"),
]


async def test_bad_input_is_refused_in_the_page_with_a_reason(
    dev_server: DevServer, page: Any
) -> None:
    await page.goto(f"{dev_server.base}/console")
    await expect(page.locator("#connection")).to_have_text("live")
    for person, body, media, reason in BAD_INPUT:
        await page.locator("#person").fill(person)
        await page.locator("#media").fill(media)
        await page.locator("#body").fill(body)
        await page.locator("#send").click()
        await expect(page.locator("#composer-error")).to_contain_text(reason)
    assert dev_server.dev.emulator.messages() == []


async def test_on_a_narrow_screen_one_panel_shows_at_a_time(
    dev_server: DevServer, page: Any
) -> None:
    await page.set_viewport_size({"width": 390, "height": 760})
    await page.goto(f"{dev_server.base}/console")
    await expect(page.locator("#connection")).to_have_text("live")
    await expect(page.locator("#composer")).to_be_visible()
    await expect(page.locator("#exchanges")).to_be_hidden()
    await page.get_by_role("button", name="Log").click()
    await expect(page.locator("#exchanges")).to_be_visible()
    await expect(page.locator("#composer")).to_be_hidden()


async def test_the_page_reconnects_by_itself_when_the_server_restarts(
    tmp_path: Path, page: Any
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    database = str(tmp_path / "adapter.sqlite3")

    first = create_dev_app(Settings(database=database), base)
    # Streams end often, so stopping the server is not held up by the open page.
    first.app.state.console.stream_seconds = 0.5
    async with serve(first.app, _listening_on(port)):
        await page.goto(f"{base}/console")
        await expect(page.locator("#connection")).to_have_text("live")
    await expect(page.locator("#connection")).to_have_text("reconnecting…")

    second = create_dev_app(Settings(database=database), base)
    async with serve(second.app, _listening_on(port)):
        await expect(page.locator("#connection")).to_have_text("live")
        await page.locator("#body").fill("back again")
        await page.locator("#body").press("Enter")
        reply = page.locator("#thread li.outbound", has_text="You said: back again")
        await expect(reply.locator(".status")).to_have_text("delivered")
        await page.context.close()  # its stream must end before this server can stop


def _listening_on(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock
