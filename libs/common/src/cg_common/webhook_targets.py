"""Where a webhook may point: an `http` or `https` URL whose host resolves only to public addresses, unless
WEBHOOK_ALLOW_PRIVATE says private ones are fine (the default in development, not in production).

Without the check, anyone allowed to make a webhook could have Cost Guardian POST into its own network (a metadata
service at 169.254.169.254, an admin port on localhost). The api checks when a webhook is made (a 422 naming the
address) and the notifier again before every attempt, since what a name resolves to can change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from cg_common.settings import ServiceSettings

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECS = 2.0
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefusedError(ValueError):
    """The URL is not one a webhook may be sent to; the message says why, for the caller."""


class WebhookTargetSettings(ServiceSettings):
    # Unset: allowed in development, refused in production.
    webhook_allow_private: bool | None = None

    @property
    def allow_private_targets(self) -> bool:
        if self.webhook_allow_private is None:
            return not self.is_production
        return self.webhook_allow_private


def check_url(url: str) -> tuple[str, int]:
    """The URL's host and port, or TargetRefusedError: http(s), a host, no credentials inside (they would end up in
    logs and in the dashboard)."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefusedError(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefusedError(f"url is not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefusedError("url must start with http:// or https://")
    if not parts.hostname:
        raise TargetRefusedError("url has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefusedError("url must not hold credentials; the signature authenticates each delivery")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse a URL of the wrong shape, a host that does not resolve, or (unless allowed) one that resolves to any
    loopback, private, link-local or otherwise non-public address."""
    host, port = check_url(url)
    if allow_private:
        return
    for address in await _resolve(host, port):
        if not _is_public(address):
            raise TargetRefusedError(
                f"url's host {host} resolves to {address}, which is not a public address "
                "(WEBHOOK_ALLOW_PRIVATE=true allows loopback, private and link-local receivers)"
            )


async def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=RESOLVE_TIMEOUT_SECS
        )
    except (OSError, TimeoutError):
        raise TargetRefusedError(f"url's host {host} does not resolve") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast
