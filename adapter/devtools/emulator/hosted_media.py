"""The media files people sent, kept by their Media SID (ME...) for `media` to serve."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from adapter.twilio.messages import Media


@dataclass(frozen=True)
class HostedMedia:
    sid: str
    message_sid: str
    source: str  # where the bytes are: a URL, or a data: URL
    content_type: str


class MediaLibrary:
    """Locked: tests read the state from their own thread while uvicorn serves it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, HostedMedia] = {}

    def host(self, message_sid: str, source: Media) -> HostedMedia:
        """Keep `source` as a media file of message `message_sid`."""
        hosted = HostedMedia(
            sid="ME" + uuid.uuid4().hex,
            message_sid=message_sid,
            source=source.url,
            content_type=source.content_type,
        )
        with self._lock:
            self._files[hosted.sid] = hosted
        return hosted

    def get(self, sid: str) -> HostedMedia | None:
        with self._lock:
            return self._files.get(sid)
