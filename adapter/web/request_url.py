"""The URL a client requested, which for a webhook is the URL Twilio signed.

Behind ngrok or a TLS-terminating proxy the app sees `http://127.0.0.1:8000/sms` while
Twilio requested `https://bot.example.com/sms`, and a signature verifies only against the
latter. Either the operator says where the app is public (`SMS_ADAPTER_PUBLIC_URL`), or
the URL is rebuilt from the request, believing forwarding headers only from proxies the
operator trusts: anyone else could set them to make us check against a URL of their choice.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import quote

from starlette.datastructures import Address
from starlette.requests import HTTPConnection
from starlette.types import Scope

from adapter.networks import Network
from adapter.twilio.signature import DEFAULT_PORTS, split_host_port


def external_url(
    request: HTTPConnection, public_url: str | None, trusted_proxies: Sequence[Network]
) -> str:
    """The URL the client requested: scheme, host, optional port, path and raw query.

    With `public_url` (the public address of what this server receives as `/`, including
    any prefix a proxy strips, e.g. `https://example.com/prefix`) the request's own host
    and headers are ignored. Prefer setting it in production: a rebuilt URL follows the
    Host header, which the client chooses.

    Path and query are taken as they came over the wire, never decoded and re-encoded,
    because Twilio signs them exactly as it sent them.
    """
    scope = request.scope
    query = _wire_text(scope.get("query_string", b""))
    query_suffix = f"?{query}" if query else ""
    if public_url:
        return public_url.rstrip("/") + _path_below_root(scope) + query_suffix
    scheme, authority = _origin(request, trusted_proxies)
    return f"{scheme}://{authority}{_full_path(scope)}{query_suffix}"


def is_trusted(client: Address | None, trusted_proxies: Sequence[Network]) -> bool:
    """Whether the immediate peer is one of the proxies whose forwarding headers we believe."""
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client.host)
    except ValueError:  # a Unix socket path or a test client's made-up name
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted_proxies)


def _origin(request: HTTPConnection, trusted_proxies: Sequence[Network]) -> tuple[str, str]:
    """The scheme and the authority (host, plus the port unless it is the scheme's default)."""
    headers = request.headers
    scheme: str = request.scope.get("scheme", "http")
    authority = headers.get("host") or _server_authority(request.scope)
    forwarded_port: str | None = None
    if is_trusted(request.client, trusted_proxies):
        forwarded = _first_forwarded_element(headers.get("forwarded"))
        proto = (forwarded.get("proto") or _first(headers.get("x-forwarded-proto")) or "").lower()
        if proto in DEFAULT_PORTS:
            scheme = proto
        authority = forwarded.get("host") or _first(headers.get("x-forwarded-host")) or authority
        claimed_port = _first(headers.get("x-forwarded-port")) or ""
        if claimed_port.isascii() and claimed_port.isdigit():
            forwarded_port = claimed_port
    host, port_in_authority = split_host_port(authority)
    port = forwarded_port or port_in_authority
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return scheme, host
    return scheme, f"{host}:{port}"


def _server_authority(scope: Scope) -> str:
    # Only an HTTP/1.0 client may omit Host; fall back to the socket the server listens on.
    server = scope.get("server")
    if not server:
        return ""
    host, port = server
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def _full_path(scope: Scope) -> str:
    """The path as received, including the root path a server like uvicorn prepends."""
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path:
        return _wire_text(raw_path)
    # Without raw_path (optional in ASGI) re-encoding the decoded path is the best guess.
    return quote(scope.get("path", "/"), safe="/:@!$&'()*+,;=~%")


def _path_below_root(scope: Scope) -> str:
    """The path below the server's root path: what follows `public_url`."""
    path = _full_path(scope)
    # Starlette's Mount extends root_path for sub-apps and keeps the server's in app_root_path.
    root: str = scope.get("app_root_path", scope.get("root_path", "")).rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :]
    return path


def _wire_text(raw: bytes) -> str:
    # Twilio sends only ASCII on the wire (it percent-encodes); UTF-8 is what it would sign.
    return raw.decode("utf-8", errors="replace")


def _first(value: str | None) -> str | None:
    """The client-most of a comma-separated list: each proxy appends its own value."""
    if not value:
        return None
    return value.split(",", 1)[0].strip() or None


# One element of RFC 7239's Forwarded header: `;`-separated name=value pairs whose
# values may be quoted strings (which may themselves contain `,` `;` `=` or escapes).
_FORWARDED_PAIR = re.compile(r'\s*([^=;,\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,]*)\s*(;|,|$)')


def _first_forwarded_element(value: str | None) -> dict[str, str]:
    """The client-most element of a Forwarded header, as lower-cased name -> value."""
    pairs: dict[str, str] = {}
    position = 0
    while value and position < len(value):
        match = _FORWARDED_PAIR.match(value, position)
        if match is None:
            break
        name, raw, separator = match.groups()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        pairs.setdefault(name.lower(), raw.strip())
        if separator != ";":
            break
        position = match.end()
    return pairs
