"""Trusted networks as the SMS_ADAPTER_TRUSTED_PROXIES setting writes them."""

from __future__ import annotations

import ipaddress
from typing import Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

TRUST_ALL: Final = "*"
_TRUST_ALL_NETWORKS: Final[tuple[Network, ...]] = (
    ipaddress.IPv4Network("0.0.0.0/0"),
    ipaddress.IPv6Network("::/0"),
)


def parse_trusted_proxies(value: str) -> list[Network]:
    """Parse "127.0.0.1, 10.0.0.0/8, ::1" (or "*" for any peer) into networks.

    Host bits are forgiven ("10.0.0.1/8" means 10.0.0.0/8); anything else that is not an
    address or network raises ValueError naming the entry, so a typo fails at start.
    """
    networks: list[Network] = []
    trust_all = False
    for entry in (part.strip() for part in value.split(",")):
        if entry == TRUST_ALL:
            trust_all = True
        elif entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted proxy {entry!r} is not an IP address or network"
                ) from None
    return list(_TRUST_ALL_NETWORKS) if trust_all else networks
