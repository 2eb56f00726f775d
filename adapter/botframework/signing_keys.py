"""The keys that sign connector tokens, fetched from an OpenID configuration or a JWKS.

A slow or failing identity provider must not stall every bot, so:
- a key we know is used at once, never behind a fetch (a stale set is refreshed in the
  background while its keys go on being used);
- at most one fetch is in flight; callers who need it (a token naming a key we do not
  know) share it, and it is bounded by a total timeout, however slowly the provider
  trickles its answer;
- a failed fetch is not tried again until a backoff has passed (doubling, capped), and a
  successful set is fetched again for an unknown key id at most once a minute, so forged
  key ids cannot make us hammer the endpoint; each failure is logged once, per fetch;
- only RSA keys are kept (tokens are RS256): an EC or symmetric key in the set is skipped,
  as is any key that cannot be read, rather than failing the set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

logger = logging.getLogger("adapter.botframework")

KEYS_TTL = 24 * 3600.0  # refresh a good set this often (in the background)
REFETCH_AT_MOST_EVERY = 60.0  # an unknown key id fetches a good set again at most this often
FETCH_TIMEOUT = 10.0  # one whole fetch: metadata and key set, connect to last byte
BACKOFF_FIRST = 5.0  # after a failed fetch, wait this long before the next...
BACKOFF_MAX = 300.0  # ...doubling per failure up to this


class KeysUnavailable(Exception):
    """The signing keys cannot be had now, so no token can be checked: our outage, not
    the caller's fault (answered 503, and the bot's SDK may try again)."""


class UnknownKey(Exception):
    """The key set, freshly enough fetched, has no key with the token's key id."""


@dataclass(frozen=True)
class SigningKey:
    key: Any  # the public key, as PyJWT takes it
    # The channels Microsoft's key set says the key may sign for (its `endorsements`);
    # None when the key says nothing, as Azure AD's keys do not.
    endorsements: frozenset[str] | None


class SigningKeys:
    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata_url: str,
        *,
        fetch_timeout: float = FETCH_TIMEOUT,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        refetch_every: float = REFETCH_AT_MOST_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._metadata_url = metadata_url
        self._fetch_timeout = fetch_timeout
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._refetch_every = refetch_every
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self.issuer: str | None = None  # the metadata's `issuer`, once fetched
        self._fetched_at: float | None = None  # last successful fetch
        self._failures = 0  # failed fetches in a row
        self._last_error: str | None = None
        self._retry_at = 0.0  # no fetch before this, after a failure
        self._fetching: asyncio.Task[None] | None = None

    async def get(self, key_id: str) -> SigningKey:
        """The key `key_id`; UnknownKey if the set has none, KeysUnavailable if the set
        cannot be had."""
        now = self._clock()
        known = self._keys.get(key_id)
        if known is not None:
            if self._fetched_at is not None and now - self._fetched_at > KEYS_TTL:
                self._start_fetch(now)  # in the background: this key is good meanwhile
            return known
        if self._fetching is None and self._may_fetch_for_unknown(now):
            self._start_fetch(now)
        if self._fetching is not None:
            # Shielded: a caller that goes away does not cancel the fetch others share.
            await asyncio.shield(self._fetching)
        known = self._keys.get(key_id)
        if known is not None:
            return known
        if self._last_error is not None:
            raise KeysUnavailable(self._last_error)
        raise UnknownKey(key_id)

    async def aclose(self) -> None:
        """Stop a fetch still in flight (at shutdown)."""
        task, self._fetching = self._fetching, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _may_fetch_for_unknown(self, now: float) -> bool:
        if now < self._retry_at:
            return False
        return self._fetched_at is None or now - self._fetched_at >= self._refetch_every

    def _start_fetch(self, now: float) -> None:
        if self._fetching is None and now >= self._retry_at:
            self._fetching = asyncio.create_task(self._fetch_once(), name="jwks-fetch")

    async def _fetch_once(self) -> None:
        try:
            async with asyncio.timeout(self._fetch_timeout):
                keys, issuer = await self._fetch()
        except Exception as error:  # every failure alike: backoff, one log line
            self._failures += 1
            delay = min(self._backoff_max, self._backoff_first * 2 ** (self._failures - 1))
            self._retry_at = self._clock() + delay
            reason = _reason(error, self._fetch_timeout)
            self._last_error = f"signing keys unavailable ({reason}); tokens cannot be checked"
            logger.error(
                "cannot fetch the signing keys from %s: %s; next try in %.0fs at the earliest",
                self._metadata_url,
                reason,
                delay,
            )
        else:
            self._keys, self._fetched_at = keys, self._clock()
            if issuer is not None:
                self.issuer = issuer
            self._failures, self._last_error, self._retry_at = 0, None, 0.0
        finally:
            self._fetching = None

    async def _fetch(self) -> tuple[dict[str, SigningKey], str | None]:
        document = await self._get_json(self._metadata_url)
        issuer = None
        if "keys" not in document:
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise _Problem("the OpenID metadata has no jwks_uri")
            if isinstance(document.get("issuer"), str):
                issuer = document["issuer"]
            document = await self._get_json(jwks_uri)
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise _Problem("the key set has no keys list")
        keys = {}
        for entry in entries:
            if isinstance(entry, Mapping):
                usable = _rsa_key(entry)
                if usable is not None:
                    keys[usable[0]] = usable[1]
        if not keys:
            raise _Problem("the key set has no usable RSA key")
        return keys, issuer

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._http.get(url)
        if response.status_code != 200:
            raise _Problem(f"{url} answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise _Problem(f"{url} answered something other than JSON") from None
        if not isinstance(data, dict):
            raise _Problem(f"{url} answered JSON that is not an object")
        return data


class _Problem(Exception):
    """What was wrong with the provider's answer, for the log line."""


def _rsa_key(entry: Mapping[str, Any]) -> tuple[str, SigningKey] | None:
    """(kid, key) for an RSA signing key with a key id; None for anything else."""
    key_id = entry.get("kid")
    if entry.get("kty") != "RSA" or not isinstance(key_id, str) or not key_id:
        return None
    if entry.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK(dict(entry), algorithm="RS256").key
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    endorsements = entry.get("endorsements")
    named = (
        frozenset(item for item in endorsements if isinstance(item, str))
        if isinstance(endorsements, list)
        else None
    )
    return key_id, SigningKey(key, named)


def _reason(error: Exception, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no complete answer within {timeout:g}s"
    if isinstance(error, _Problem):
        return str(error)
    if isinstance(error, httpx.HTTPError):
        return f"{type(error).__name__}"
    return f"unexpected {type(error).__name__}"
