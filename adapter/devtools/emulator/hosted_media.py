"""The media files of messages, kept by their Media SID (ME...) for `media` to serve:
those people sent, and those the account sent with MediaUrl."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from adapter.twilio.messages import Media


@dataclass(frozen=True)
class HostedMedia:
    sid: str
    message_sid: str
    source: str  # where the bytes are: a URL, or a data: URL
    content_type: str
    date_created: datetime


class MediaLibrary:
    """Locked: tests read the state from their own thread while uvicorn serves it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, HostedMedia] = {}

    def host(self, message_sid: str, source: Media, created: datetime) -> HostedMedia:
        """Keep `source` as a media file of message `message_sid`."""
        hosted = HostedMedia(
            sid="ME" + uuid.uuid4().hex,
            message_sid=message_sid,
            source=source.url,
            content_type=source.content_type,
            date_created=created,
        )
        with self._lock:
            self._files[hosted.sid] = hosted
        return hosted

    def get(self, sid: str) -> HostedMedia | None:
        with self._lock:
            return self._files.get(sid)

    def of_message(self, message_sid: str) -> list[HostedMedia]:
        """A message's media files, in the order they were given."""
        with self._lock:
            return [f for f in self._files.values() if f.message_sid == message_sid]

    def delete(self, sid: str) -> bool:
        with self._lock:
            return self._files.pop(sid, None) is not None
