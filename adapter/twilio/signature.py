"""Is this webhook really from Twilio? Checks `X-Twilio-Signature`.

Twilio signs each webhook with an HMAC over the exact URL it requested followed by every
POST parameter, sorted. This module mirrors `twilio.request_validator.RequestValidator`
(the tests hold it to that reference) and adds what a channel needs: several keys at once
while an auth token is rotated, constant-time comparison, and a `SignatureCheck` that says
why a request failed without ever containing a secret or the signature we expected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final
from urllib.parse import parse_qsl

DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
SIGNATURE_HEADER: Final = "X-Twilio-Signature"
# Present (e.g. "key=webhooks_sharedkey_...,algorithm=HMAC_SHA256") only on webhooks
# signed with a shared key instead of the auth token.
SETTINGS_HEADER: Final = "X-Twilio-Webhooks-Signature-Settings"
# Twilio signs a JSON body by hashing it into this query parameter and signing the URL alone.
BODY_HASH_PARAM: Final = "bodySHA256"

HMAC_SHA1: Final = "HMAC-SHA1"
HMAC_SHA256: Final = "HMAC-SHA256"
_DIGESTS: Final[dict[str, Callable[[], Any]]] = {
    HMAC_SHA1: hashlib.sha1,
    HMAC_SHA256: hashlib.sha256,
}


@dataclass(frozen=True)
class SignatureCheck:
    """The verdict on one request, safe to log and show: it never holds a secret."""

    valid: bool
    reason: str
    algorithm: str


def string_to_sign(url: str, params: Sequence[tuple[str, str]]) -> str:
    """The URL, then name+value for each parameter, names and each name's values sorted.

    A value repeated under one name counts once, as in the reference library (which
    sorts a set of the values); Twilio itself never repeats a name+value pair.
    """
    return url + _signed_params(params)


def _signed_params(params: Sequence[tuple[str, str]]) -> str:
    values_by_name: dict[str, set[str]] = {}
    for name, value in params:
        values_by_name.setdefault(name, set()).add(value)
    # str order is code-point order, which is the byte order of the UTF-8 Twilio signs.
    return "".join(
        name + value for name in sorted(values_by_name) for value in sorted(values_by_name[name])
    )


def compute_signature(
    key: str, url: str, params: Sequence[tuple[str, str]], algorithm: str = HMAC_SHA1
) -> str:
    """The base64 signature Twilio would send for this URL and these POST parameters."""
    if algorithm not in _DIGESTS:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}")
    return _sign(key, string_to_sign(url, params).encode(), algorithm).decode("ascii")


def _sign(key: str, message: bytes, algorithm: str) -> bytes:
    return base64.b64encode(hmac.new(key.encode(), message, _DIGESTS[algorithm]).digest())


@lru_cache(maxsize=64)  # a server has a few webhook URLs, each checked on every request
def url_variants(url: str) -> tuple[str, ...]:
    """The URLs Twilio may have signed for a request to `url`, the URL as given first.

    | requested                   | also tried                                        |
    |-----------------------------|---------------------------------------------------|
    | `scheme://host/p`           | `scheme://host:443/p` (`:80` for http)            |
    | `scheme://host:443/p` (default port) | `scheme://host/p`                        |
    | `https://host:8443/p`       | `https://host/p`: Twilio's own libraries accept it, and Twilio has been seen to sign it so |
    | `http://host:8000/p`        | nothing: a plain-http webhook on its own port is a local setup, signed as requested |

    Twilio is inconsistent about whether the port is in the URL it signs, so the
    reference library tries the URL with and without it. Everything after the authority
    (path, query) is kept byte for byte.
    """
    scheme, separator, rest = url.partition("://")
    default_port = DEFAULT_PORTS.get(scheme.lower())
    if not separator or default_port is None:
        return (url,)
    authority_end = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, host_port = authority.rpartition("@")
    host, port = split_host_port(host_port)
    prefix = f"{scheme}://{userinfo}{at}{host}"
    if port is None:
        return (url, f"{prefix}:{default_port}{tail}")
    if port == default_port or scheme.lower() == "https":
        return (url, prefix + tail)
    return (url,)


class SignatureValidator:
    """Checks requests against the auth tokens (HMAC-SHA1) or the shared key (HMAC-SHA256).

    Several auth tokens may be valid at once, so a token can be rotated without
    rejecting the webhooks Twilio signed just before or after the switch.
    """

    __slots__ = ("_auth_tokens", "_shared_key")

    def __init__(self, auth_tokens: Sequence[str], shared_key: str | None = None) -> None:
        # Whitespace is stripped because tokens come from env files and secret mounts,
        # which often end in a newline; empty values mean "not configured".
        self._auth_tokens = tuple(t.strip() for t in auth_tokens if t.strip())
        self._shared_key = shared_key.strip() if shared_key and shared_key.strip() else None

    def __repr__(self) -> str:
        shared = "set" if self._shared_key else "none"
        return f"SignatureValidator(<{len(self._auth_tokens)} auth tokens>, shared key {shared})"

    def check(
        self,
        url: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> SignatureCheck:
        """Whether Twilio signed this request, and if not, why.

        `url` is the URL Twilio requested (see `adapter.web.request_url.external_url`),
        `params` the parsed form with repeats kept, `body` the raw request body: it is
        required when the URL carries `bodySHA256`, and `params` are then ignored
        because the signature covers only the URL and the URL covers the body.
        """
        algorithm = _requested_algorithm(_header(headers, SETTINGS_HEADER))

        def verdict(reason: str) -> SignatureCheck:
            return SignatureCheck(valid=reason == "ok", reason=reason, algorithm=algorithm)

        if algorithm not in _DIGESTS:
            return verdict(f"unsupported signature algorithm {algorithm[:40]!r}")
        if algorithm == HMAC_SHA256:
            keys: tuple[str, ...] = (self._shared_key,) if self._shared_key else ()
            if not keys:
                return verdict("sha256 signature but no shared key configured")
        else:
            keys = self._auth_tokens
            if not keys:
                return verdict("no auth token configured")

        signature = (_header(headers, SIGNATURE_HEADER) or "").strip()
        if not signature:
            return verdict(f"missing {SIGNATURE_HEADER} header")

        body_hash = _body_hash_in(url)
        if body_hash is not None:
            if body is None:
                return verdict(f"{BODY_HASH_PARAM} in URL but no body to check")
            actual = hashlib.sha256(body).hexdigest()
            if not hmac.compare_digest(actual.encode(), body_hash.strip().lower().encode()):
                return verdict(f"body does not match {BODY_HASH_PARAM}")
            params = ()

        presented = signature.encode()
        # The parameters' part of the string to sign is the same for every key and URL
        # variant: build it once (this runs for every webhook).
        signed_params = _signed_params(params)
        for candidate in url_variants(url):
            message = (candidate + signed_params).encode()
            for key in keys:
                if hmac.compare_digest(_sign(key, message, algorithm), presented):
                    return verdict("ok")
        return verdict("signature does not match")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Callers pass Starlette's Headers (already case-insensitive) or plain dicts.
    if hasattr(headers, "getlist"):
        return headers.get(name)
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _requested_algorithm(settings: str | None) -> str:
    """The algorithm the settings header names, spelled like HMAC_SHA1; HMAC-SHA1 if none.

    Twilio documents a comma-separated list; `;`, spaces, case and `_` versus `-` are
    forgiven because a proxy or a hand-written test client may mangle them.
    """
    for part in re.split(r"[;,]", settings or ""):
        name, separator, value = part.partition("=")
        value = value.strip().strip('"')
        if separator and name.strip().lower() == "algorithm" and value:
            return value.upper().replace("_", "-")
    return HMAC_SHA1


def _body_hash_in(url: str) -> str | None:
    query = url.partition("?")[2].partition("#")[0]
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == BODY_HASH_PARAM:
            return value
    return None


def split_host_port(authority: str) -> tuple[str, str | None]:
    """Split "host:port" into ("host", "port"); IPv6 stays bracketed: ("[::1]", "8000")."""
    host, colon, port = authority.rpartition(":")
    # A colon inside the host is IPv6 and must be bracketed, else the "port" is part of it.
    if colon and (":" not in host or host.endswith("]")) and port.isascii() and port.isdigit():
        return host, port
    return authority, None
