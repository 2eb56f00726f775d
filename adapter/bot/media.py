"""A text's media as a bot gets it from `await ctx.download(...)`, and what can go wrong.

MediaDownloadError
 ├── MediaUrlNotAllowed   the URL, or a redirect, leads away from Twilio's media hosts
 ├── MediaTooLarge        more bytes than max_bytes
 └── MediaUnavailable     an HTTP error status, a network error, too many redirects
"""

from __future__ import annotations

from dataclasses import dataclass


class MediaDownloadError(Exception):
    """A media file could not be downloaded; the message says why (never a secret)."""


class MediaUrlNotAllowed(MediaDownloadError):
    pass


class MediaTooLarge(MediaDownloadError):
    pass


class MediaUnavailable(MediaDownloadError):
    pass


@dataclass(frozen=True)
class MediaFile:
    content: bytes
    content_type: str  # the media type without parameters, e.g. "image/jpeg"
    url: str  # the URL asked for (not the CDN URL it was finally read from)

    @property
    def size(self) -> int:
        return len(self.content)
