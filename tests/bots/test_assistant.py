"""The assistant against a fake OpenAI-compatible endpoint on loopback (a real HTTP
server under uvicorn, answering /v1/chat/completions as such servers do)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapter.delivery.lifecycle import BotStartupError
from adapter.segments import count_segments
from adapter.testing import BotConversation
from bots.assistant import SORRY, router
from tests.servers import bound_socket, serve


@dataclass
class FakeModel:
    """Answers with `answers` in turn (or echoes the last question); a status above 200
    makes it fail like a server that is down."""

    answers: list[str] = field(default_factory=list)
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)

    async def completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        self.keys.append(request.headers.get("authorization"))
        if self.status != 200:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=self.status)
        content = (
            self.answers.pop(0) if self.answers else f"You asked: {body['messages'][-1]['content']}"
        )
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
        )


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeModel]:
    model = FakeModel()
    app = Starlette(routes=[Route("/v1/chat/completions", model.completions, methods=["POST"])])
    sock, base = bound_socket()
    monkeypatch.setenv("ASSISTANT_BASE_URL", f"{base}/v1")
    monkeypatch.setenv("ASSISTANT_MODEL", "tiny-model")
    monkeypatch.setenv("ASSISTANT_API_KEY", "test-key")
    async with serve(app, sock):
        yield model


async def test_the_model_gets_the_conversation_so_far(fake: FakeModel) -> None:
    fake.answers = ["Nice to meet you, Ann!", "Your name is Ann."]
    async with BotConversation(router) as chat:
        assert await chat.send("My name is Ann") == ["Nice to meet you, Ann!"]
        assert await chat.send("What is my name?") == ["Your name is Ann."]

    last = fake.requests[-1]
    assert last["model"] == "tiny-model"
    assert [(m["role"], m["content"]) for m in last["messages"][1:]] == [
        ("user", "My name is Ann"),
        ("assistant", "Nice to meet you, Ann!"),
        ("user", "What is my name?"),
    ]
    assert last["messages"][0]["role"] == "system"
    assert fake.keys == ["Bearer test-key", "Bearer test-key"]


async def test_new_starts_the_conversation_over(fake: FakeModel) -> None:
    async with BotConversation(router) as chat:
        await chat.send("I like cats")
        await chat.send("new")
        await chat.send("What do I like?")
    # Nothing from before NEW: the model starts from the bot's greeting.
    assert [m["content"] for m in fake.requests[-1]["messages"][1:]] == [
        "OK, new conversation. What can I do for you?",
        "What do I like?",
    ]


async def test_a_long_answer_is_cut_to_the_segment_budget(
    fake: FakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSISTANT_SEGMENTS", "2")
    fake.answers = ["word " * 400]
    async with BotConversation(router) as chat:
        [answer] = await chat.send("Tell me everything")
    assert count_segments(answer) <= 2
    assert answer.endswith("word...")
    assert len(answer) > 250  # cut near the budget, not far below it
    assert fake.requests[0]["max_tokens"] == 2 * 153 // 3


async def test_when_the_model_fails_the_person_gets_an_apology(fake: FakeModel) -> None:
    fake.status = 503
    async with BotConversation(router) as chat:
        assert await chat.send("hello?") == [SORRY]
        [error] = chat.errors
    assert "503" in str(error)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ASSISTANT_BASE_URL", "localhost:11434", "ASSISTANT_BASE_URL 'localhost:11434' is not"),
        ("ASSISTANT_MODEL", " ", "ASSISTANT_MODEL is empty"),
        ("ASSISTANT_SEGMENTS", "0", "ASSISTANT_SEGMENTS '0' is not a whole number"),
    ],
)
async def test_a_bad_setting_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    chat = BotConversation("bots.assistant:router")
    with pytest.raises(
        BotStartupError, match=r"bot bots\.assistant:router: its startup hook"
    ) as failure:
        await chat.start()
    assert message in str(failure.value)
