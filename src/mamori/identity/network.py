"""IP allow lists per route group, and which address a request really came from.

``X-Forwarded-For`` is client-controlled text: anybody can send ``X-Forwarded-For: 127.0.0.1``.
It is believed only when the direct peer is a configured trusted proxy, and then only as far as
the chain of trusted proxies goes: walking the list from the right, the first address that is
not a trusted proxy is the client (every address left of it was written by the client itself).
See https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/X-Forwarded-For#security_and_privacy_concerns
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from mamori.config import Settings
from mamori.errors import AccessDeniedError, ConfigError

__all__ = ["IPAddress", "IPNetwork", "NetworkPolicy", "RouteGroup", "client_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RouteGroup(enum.StrEnum):
    """Route groups that carry their own allow list."""

    API = "api"
    """The ``/v1`` API."""
    ADMIN = "admin"
    """Admin routes (audit export, overrides, token management, server-side registration)."""
    HOOKS = "hooks"
    """Webhook receivers."""


def _networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError as exc:
        msg = f"invalid CIDR in allow list: {exc}"
        raise ConfigError(msg) from exc


def _parse(text: str) -> IPAddress | None:
    candidate = text.strip()
    # Some proxies append a port ("203.0.113.7:4711", "[2001:db8::1]:443"); strip it.
    if candidate.startswith("[") and "]" in candidate:
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:
        candidate = candidate.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    # An IPv4-mapped IPv6 peer (::ffff:10.0.0.1) must match IPv4 allow lists.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client's address, or ``None`` when it cannot be established (which is a deny).

    Args:
        peer: the direct TCP peer's host.
        forwarded_for: every ``X-Forwarded-For`` header value, in order.
        trusted_proxies: networks whose forwarding headers are believed.
    """
    if peer is None:
        return None
    address = _parse(peer)
    if address is None or not _within(address, trusted_proxies):
        return address
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        parsed = _parse(hop)
        if parsed is None:
            # A trusted proxy forwarded garbage as the client: nothing we could allow.
            return None
        if not _within(parsed, trusted_proxies):
            return parsed
        address = parsed
    # Every hop is a trusted proxy: the left-most one is as close to the client as we know.
    return address


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Allow lists per route group plus the trusted proxies."""

    allow: Mapping[RouteGroup, tuple[IPNetwork, ...]]
    trusted_proxies: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> NetworkPolicy:
        """Build the policy from ``allow_api``, ``allow_admin``, ``allow_hooks``."""
        return cls(
            allow=MappingProxyType(
                {
                    RouteGroup.API: _networks(settings.allow_api),
                    RouteGroup.ADMIN: _networks(settings.allow_admin),
                    RouteGroup.HOOKS: _networks(settings.allow_hooks),
                }
            ),
            trusted_proxies=_networks(settings.trusted_proxies),
        )

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> IPAddress | None:
        """The client address of a request (see :func:`client_address`)."""
        return client_address(peer, forwarded_for, self.trusted_proxies)

    def check(self, group: RouteGroup, peer: str | None, forwarded_for: Sequence[str]) -> None:
        """Raise :class:`AccessDeniedError` unless the client may call routes of ``group``.

        An empty allow list allows nobody (fail closed), never everybody.
        """
        address = self.client(peer, forwarded_for)
        if address is None:
            msg = f"{group.value} routes: the client address could not be established"
            raise AccessDeniedError(msg, policy_ids=(f"allow-{group.value}",))
        if not _within(address, self.allow.get(group, ())):
            msg = f"{group.value} routes are not allowed from {address}"
            raise AccessDeniedError(msg, policy_ids=(f"allow-{group.value}",))
