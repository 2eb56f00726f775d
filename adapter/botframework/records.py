"""Our records of who a Bot Framework bot talks to, and over which of our numbers.

A bot addresses a conversation by its id alone, and its body's `from` and `serviceUrl`
are whatever the bot says. Which of our numbers texts the person back is therefore taken
from these records, written when we post a text to the bot (or when the bot starts a
conversation through us): never from the bot's body. One record per bot and conversation
(our number and the person), kept in the store's conversation state under a key of its
own, so it survives restarts and is shared by replicas.

The conversation id a bot is given names both ends, `<our number>|<person>`, as the store
keys conversations: one person texting two of our numbers is two conversations, each
answered from its number. Before, the id was the person's number alone and the record
was one per bot and person; ids and records of that shape (`LEGACY`) are still read, so
references a bot saved then keep working.

A record also remembers the last activity posted and whether the bot answered it: a post
that failed after the bot answered is not made again, so nobody gets the answer twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from typing import Any

from adapter.store.base import Store
from adapter.twilio.messages import ConversationKey

KEY_PREFIX = "botframework:"
NUMBER_KEY_PREFIX = "botframework-number:"
SEPARATOR = "|"
# Far above two addresses ("whatsapp:+...|whatsapp:+..."); a longer id is not one we gave.
MAX_ID_LENGTH = 200
_LOCK_STRIPES = 64


def conversation_id_of(ours: str, person: str) -> str:
    """The conversation.id a bot is given: "+15005550006|+15551234567"."""
    return str(ConversationKey(ours=ours, person=person))


def is_legacy_id(conversation: str) -> bool:
    """An id from before ids named our number: the person's number alone."""
    return SEPARATOR not in conversation


@dataclass(frozen=True)
class ConversationRecord:
    # The store's conversation key ("ours|person"): keeps send order. It is also the
    # conversation id the bot is given, and the record is kept under it; a legacy record,
    # under the person's number, has it too.
    conversation: str
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

    async def find(self, bot_id: str, conversation: str) -> ConversationRecord | None:
        """The record of the conversation a bot calls `conversation`: "ours|person", or
        a legacy id (the person's number), whose record is the one from before."""
        if not _could_be_ours(conversation):
            return None  # and the store is not asked: PostgreSQL refuses a NUL, say
        data = await self._store.load_state(_key(bot_id, conversation))
        return ConversationRecord.from_json(data) if data else None

    async def find_posted(
        self, bot_id: str, conversation: str, person: str, activity_id: str
    ) -> ConversationRecord | None:
        """The record of `conversation` before `activity_id` is posted in it: its own,
        else, when it has none yet, the person's legacy record if that one's last text
        is this very one (posted before the upgrade, and to be posted again now)."""
        record = await self.find(bot_id, conversation)
        if record is not None:
            return record
        legacy = await self.find(bot_id, person)
        return legacy if legacy is not None and legacy.activity_id == activity_id else None

    async def save(self, bot_id: str, record: ConversationRecord) -> None:
        await self._store.save_state(_key(bot_id, record.conversation), asdict(record))

    async def mark_answered(self, bot_id: str, conversation: str, activity_id: str) -> None:
        """The bot replied to `activity_id` in `conversation`: remember it, if that is
        still the conversation's last text. A reply by a legacy id marks the new record
        too: the text may have been posted again since, under the conversation's own id."""
        marked = await self._mark(_key(bot_id, conversation), activity_id)
        if marked is not None and marked.conversation != conversation:
            await self._mark(_key(bot_id, marked.conversation), activity_id)

    async def _mark(self, key: str, activity_id: str) -> ConversationRecord | None:
        """Mark the record under `key` answered if `activity_id` is its last text; the
        record as found."""
        async with self._locks[hash(key) % _LOCK_STRIPES]:
            data = await self._store.load_state(key)
            if not data:
                return None
            record = ConversationRecord.from_json(data)
            if record.activity_id == activity_id and not record.answered:
                await self._store.save_state(key, asdict(replace(record, answered=True)))
            return record


def _could_be_ours(conversation: str) -> bool:
    return (
        len(conversation) <= MAX_ID_LENGTH
        and conversation.count(SEPARATOR) <= 1
        and conversation.isprintable()
    )


def _number_key(bot_id: str, number: str) -> str:
    return f"{NUMBER_KEY_PREFIX}{bot_id}|{number}"


def _key(bot_id: str, conversation: str) -> str:
    # A legacy id makes the legacy key, "botframework:{bot}|{person}": the two never
    # meet, as a person's number holds no "|".
    return f"{KEY_PREFIX}{bot_id}|{conversation}"
