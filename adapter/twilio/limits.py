"""Limits Twilio sets on a message, used wherever a message is built or checked."""

from __future__ import annotations

from typing import Final

# Media items one message may carry (NumMedia in, MediaUrl out).
MAX_MEDIA: Final = 10
# Characters in one message's body; Twilio refuses longer bodies with error 21617.
MAX_BODY_CHARS: Final = 1600
