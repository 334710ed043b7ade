"""Which URLs crmflow calls: http(s), with a host, without credentials, to public addresses.

``url_problem`` checks the shape, on submit (webhook endpoints, automations'
``http`` steps) and again before each call. Where a host name may connect is
decided at call time (``activities.outbound``, which resolves it and checks
each address with ``refused_address``); a host that is an address is checked
on submit too (``address_problem``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from yarl import URL

_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
#: A label of a host name as DNS looks it up: letters, digits, hyphens (and the underscore
#: some names carry), 1 to 63 of them; a name in other scripts arrives IDNA-encoded.
_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


def url_problem(url: str) -> str | None:
    """Why crmflow does not call ``url``; None for an http(s) URL with a host name (one DNS
    can encode) or a dotted IPv4 address, and no credentials."""
    try:
        parsed = URL(url)
        host = parsed.host
        raw_host = parsed.raw_host
    except (ValueError, UnicodeError):
        return "an http:// or https:// URL with a host"
    if parsed.scheme not in ("http", "https") or not host or not parsed.is_absolute():
        return "an http:// or https:// URL with a host"
    if parsed.user is not None or parsed.password is not None:
        return "no credentials in the URL: deliveries are signed instead"
    if not _is_address(host):
        labels = (raw_host or "").removesuffix(".").split(".")
        if not all(_LABEL.match(label) for label in labels) or len(raw_host or "") > 253:
            return f"{host} is not a host name DNS can look up"
        if all(_NUMERIC_LABEL.match(label) for label in labels):
            return f"write the address {host} as four decimal numbers (a.b.c.d)"
    return None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True


def allowed(allowed_hosts: Iterable[str], host: str, port: int | None) -> bool:
    """Whether ``host`` (on ``port``) is allowlisted: an entry ``host`` allows every port,
    ``host:port`` that one."""
    entries = {entry.lower() for entry in allowed_hosts}
    return host.lower() in entries or f"{host.lower()}:{port}" in entries


def refused_address(address: str) -> bool:
    """Whether ``address`` is inside the network or not a unicast public address (an IPv6
    address carrying an IPv4 one, mapped, 6to4 or Teredo, is judged by that one too)."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if ip.is_site_local or any(v4 is not None and refused_address(str(v4)) for v4 in embedded):
            return True
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def address_problem(url: str, allowed_hosts: list[str]) -> str | None:
    """Why ``url``, whose host is an IP address, may not be called: the address is inside
    the network and not allowed; None for a host name (resolved at call time) or a public
    address."""
    parsed = URL(url)
    host = parsed.host or ""
    if not _is_address(host):
        return None
    if allowed(allowed_hosts, host, parsed.port) or not refused_address(host):
        return None
    return f"{host} is an address inside the network"
