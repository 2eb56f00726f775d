"""An SMS assistant: answers texts with a language model, through any OpenAI-compatible
chat-completions endpoint. Run it against a model on your machine (Ollama):

    ollama pull llama3.2
    ASSISTANT_MODEL=llama3.2 SMS_ADAPTER_BOTS=bots.assistant:router sms-adapter dev

or a hosted one:

    ASSISTANT_BASE_URL=https://api.openai.com/v1 ASSISTANT_API_KEY=sk-... \\
    ASSISTANT_MODEL=gpt-4o-mini SMS_ADAPTER_BOTS=bots.assistant:router sms-adapter serve

It shows why history matters: a text is a line of a conversation ("and tomorrow?"), so
the model gets `ctx.history()` (both directions, from Twilio) as the conversation. The
HTTP client is opened by a startup hook and closed by a shutdown hook; an error handler
answers when the model cannot; answers are cut to a segment budget, since each SMS
segment is billed and a phone shows a long text badly. Text NEW to start over.

Settings (environment): ASSISTANT_BASE_URL (default http://127.0.0.1:11434/v1, Ollama),
ASSISTANT_MODEL (default llama3.2), ASSISTANT_API_KEY (none for a local server),
ASSISTANT_SEGMENTS (the budget, default 3 segments: about 450 characters).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from adapter import Context, HistoryMessage, Keyword, Router

router = Router("assistant")
logger = logging.getLogger(__name__)

HISTORY_MESSAGES = 12  # the latest texts and answers the model sees, this text included
SYSTEM_PROMPT = (
    "You are a helpful assistant answering by SMS. Answer in plain text (no markdown), "
    "briefly: at most {chars} characters."
)
SORRY = "Sorry, I can't answer right now. Please try again in a minute."


@dataclass(frozen=True)
class AssistantSettings:
    base_url: str
    model: str
    api_key: str | None
    segments: int

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> AssistantSettings:
        """The settings, checked; a ValueError names the setting that is wrong."""
        base_url = env.get("ASSISTANT_BASE_URL", "http://127.0.0.1:11434/v1").strip()
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(
                f"ASSISTANT_BASE_URL {base_url!r} is not an http(s) URL, like "
                "http://127.0.0.1:11434/v1 or https://api.openai.com/v1"
            )
        model = env.get("ASSISTANT_MODEL", "llama3.2").strip()
        if not model:
            raise ValueError("ASSISTANT_MODEL is empty: name the model, like llama3.2")
        segments = env.get("ASSISTANT_SEGMENTS", "3").strip()
        if not segments.isdigit() or int(segments) < 1:
            raise ValueError(f"ASSISTANT_SEGMENTS {segments!r} is not a whole number above 0")
        api_key = env.get("ASSISTANT_API_KEY", "").strip() or None
        return cls(base_url.rstrip("/"), model, api_key, int(segments))


class ChatModel:
    """A client of one chat-completions endpoint, open between startup and shutdown."""

    def __init__(self) -> None:
        self._http: httpx.AsyncClient | None = None
        self.settings = AssistantSettings("http://unset", "unset", None, 3)

    async def open(self, settings: AssistantSettings) -> None:
        self.settings = settings
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        # A model can take a while; the adapter's handler time limit still bounds a turn.
        self._http = httpx.AsyncClient(
            base_url=settings.base_url, headers=headers, timeout=httpx.Timeout(45, connect=5)
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def answer(self, messages: list[dict[str, str]], max_chars: int) -> str:
        if self._http is None:
            raise RuntimeError("the assistant's client is not open (its startup hook did not run)")
        answer = await self._http.post(
            "/chat/completions",
            json={
                "model": self.settings.model,
                "messages": messages,
                # Roughly four characters a token: room for the budget, not for an essay.
                "max_tokens": max_chars // 3,
            },
        )
        answer.raise_for_status()
        content = answer.json()["choices"][0]["message"]["content"]
        if not isinstance(content, str) or not content.strip():
            raise ValueError("the model answered with no text")
        return content.strip()


model = ChatModel()


@router.on_startup
async def open_model() -> None:
    await model.open(AssistantSettings.from_environment(os.environ))


@router.on_shutdown
async def close_model() -> None:
    await model.close()


@router.message(Keyword("NEW"))
async def start_over(ctx: Context) -> None:
    # History comes from Twilio and cannot be deleted; the model just sees none before now.
    ctx.state["since"] = ctx.message.received_at.isoformat()
    await ctx.reply("OK, new conversation. What can I do for you?")


@router.message()
async def ask(ctx: Context) -> None:
    budget = model.settings.segments * 153  # characters in that many GSM-7 segments
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(chars=budget)}]
    messages += [as_chat_message(m) for m in await recent(ctx) if m.body.strip()]
    answer = await model.answer(messages, budget)
    await ctx.reply(fit(answer, model.settings.segments, ctx.segments))


@router.error()
async def sorry(ctx: Context, error: Exception) -> None:
    logger.warning("could not answer %s: %s: %s", ctx.activity.id, type(error).__name__, error)
    await ctx.reply(SORRY)


async def recent(ctx: Context) -> list[HistoryMessage]:
    """The conversation so far, oldest first and this text last, since the last NEW."""
    messages = await ctx.history(limit=HISTORY_MESSAGES)
    since = ctx.state.get("since")
    if isinstance(since, str):
        start = datetime.fromisoformat(since)
        messages = [m for m in messages if m.at > start or m.sid == ctx.message.message_sid]
    return messages


def as_chat_message(message: HistoryMessage) -> dict[str, str]:
    return {"role": "user" if message.inbound else "assistant", "content": message.body}


def fit(text: str, segments: int, measure: Callable[[str], int]) -> str:
    """`text`, cut between words (with "...") to at most `segments` SMS segments as
    `measure` (`ctx.segments`) bills them."""
    if measure(text) <= segments:
        return text
    words = text.split()
    low, high = 0, len(words)  # the most words that fit lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if measure(" ".join(words[:middle]) + "...") <= segments:
            low = middle
        else:
            high = middle - 1
    if low == 0:  # one enormous "word": cut it by characters
        cut = text
        while cut and measure(cut + "...") > segments:
            cut = cut[: len(cut) * 9 // 10]
        return cut + "..."
    return " ".join(words[:low]) + "..."
