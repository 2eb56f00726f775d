"""Our records of who a Bot Framework bot talks to, and over which of our numbers.

A bot addresses a conversation by its id alone (the person's number, Microsoft's SMS
scheme), and its body's `from` and `serviceUrl` are whatever the bot says. Which of our
numbers texts the person back is therefore taken from these records, written when we
post a text to the bot (or when the bot starts a conversation through us): never from the
bot's body. One record per bot and person, kept in the store's conversation state under
a key of its own, so it survives restarts and is shared by replicas.

A record also remembers the last activity posted and whether the bot answered it: a post
that failed after the bot answered is not made again, so nobody gets the answer twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from typing import Any

from adapter.store.base import Store

KEY_PREFIX = "botframework:"
NUMBER_KEY_PREFIX = "botframework-number:"
_LOCK_STRIPES = 64


@dataclass(frozen=True)
class ConversationRecord:
    conversation: str  # the store's conversation key ("ours|person"): keeps send order
    person: str
    reply_from: str | None  # our number the replies come from...
    reply_service: str | None  # ...or the Messaging Service they go through
    activity_id: str | None = None  # the last text posted to the bot
    attempts: int = 0  # posts of `activity_id` made so far
    answered: bool = False  # the bot sent something in reply to `activity_id`
    # Times `activity_id` waited for a token (auth jwt), not counted among its attempts.
    token_waits: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConversationRecord:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


class ConversationRecords:
    def __init__(self, store: Store) -> None:
        self._store = store
        # Read-modify-write of one record (marking it answered while a reply arrives)
        # is serialised within this process; striped, so memory stays bounded.
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        # (bot, number) pairs known to be in the store: each is written once per process.
        self._numbers_noted: set[tuple[str, str]] = set()

    async def note_number(self, bot_id: str, number: str) -> None:
        """The bot was texted at our `number`: it may start conversations from it."""
        if (bot_id, number) in self._numbers_noted:
            return
        key = _number_key(bot_id, number)
        if not await self._store.load_state(key):
            await self._store.save_state(key, {"texted": True})
        self._numbers_noted.add((bot_id, number))

    async def knows_number(self, bot_id: str, number: str) -> bool:
        if (bot_id, number) in self._numbers_noted:
            return True
        return bool(await self._store.load_state(_number_key(bot_id, number)))

    async def find(self, bot_id: str, person: str) -> ConversationRecord | None:
        data = await self._store.load_state(_key(bot_id, person))
        return ConversationRecord.from_json(data) if data else None

    async def save(self, bot_id: str, record: ConversationRecord) -> None:
        await self._store.save_state(_key(bot_id, record.person), asdict(record))

    async def mark_answered(self, bot_id: str, person: str, activity_id: str) -> None:
        """The bot replied to `activity_id`: remember it, if that is still its last text."""
        key = _key(bot_id, person)
        async with self._locks[hash(key) % _LOCK_STRIPES]:
            record = await self.find(bot_id, person)
            if record is None or record.activity_id != activity_id or record.answered:
                return
            await self.save(bot_id, replace(record, answered=True))


def _number_key(bot_id: str, number: str) -> str:
    return f"{NUMBER_KEY_PREFIX}{bot_id}|{number}"


def _key(bot_id: str, person: str) -> str:
    return f"{KEY_PREFIX}{bot_id}|{person}"
