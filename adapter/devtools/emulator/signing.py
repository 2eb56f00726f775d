"""Posting a signed form the way Twilio posts webhooks and status callbacks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from adapter.twilio.signature import (
    HMAC_SHA256,
    SETTINGS_HEADER,
    SIGNATURE_HEADER,
    compute_signature,
)

SHARED_KEY_ID = "webhooks_sharedkey_emulator"


@dataclass(frozen=True)
class Signer:
    """Signs with the auth token (HMAC-SHA1), or with a shared key (HMAC-SHA256) if given."""

    auth_token: str = field(repr=False)
    shared_key: str | None = field(default=None, repr=False)

    def headers(self, url: str, form: Mapping[str, str]) -> dict[str, str]:
        params = list(form.items())
        if self.shared_key is None:
            return {SIGNATURE_HEADER: compute_signature(self.auth_token, url, params)}
        return {
            SIGNATURE_HEADER: compute_signature(self.shared_key, url, params, HMAC_SHA256),
            SETTINGS_HEADER: f"key={SHARED_KEY_ID},algorithm=HMAC_SHA256",
        }


async def post_signed_form(
    client: httpx.AsyncClient,
    url: str,
    form: Mapping[str, str],
    signer: Signer,
    *,
    timeout: httpx.Timeout | None = None,
) -> httpx.Response:
    """POST `form` to `url`, signed over exactly that URL. httpx errors reach the caller.
    `timeout` replaces the client's own (connection overrides set it)."""
    headers = signer.headers(url, form)
    if timeout is None:
        return await client.post(url, data=dict(form), headers=headers)
    return await client.post(url, data=dict(form), headers=headers, timeout=timeout)
