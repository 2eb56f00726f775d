"""Posting a signed form the way Twilio posts webhooks and status callbacks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
SHARED_KEY_ID = "webhooks_sharedkey_emulator"


@dataclass(frozen=True)
class Signer:
    """Signs with the auth token (HMAC-SHA1), or with a shared key (HMAC-SHA256) if given."""

    auth_token: str = field(repr=False)
    shared_key: str | None = field(default=None, repr=False)

    def headers(self, url: str, form: Mapping[str, str]) -> dict[str, str]:
        params = dict(form)
        if self.shared_key is None:
            signature = RequestValidator(self.auth_token).compute_signature(url, params)
            return {SIGNATURE_HEADER: str(signature)}
        signature = RequestValidator(self.shared_key).compute_signature(url, params, "HMAC_SHA256")
        return {
            SIGNATURE_HEADER: str(signature),
            SIGNATURE_SETTINGS_HEADER: f"key={SHARED_KEY_ID},algorithm=HMAC_SHA256",
        }


async def post_signed_form(
    client: httpx.AsyncClient, url: str, form: Mapping[str, str], signer: Signer
) -> httpx.Response:
    """POST `form` to `url`, signed over exactly that URL. httpx errors reach the caller."""
    return await client.post(url, data=dict(form), headers=signer.headers(url, form))
