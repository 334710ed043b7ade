"""Which URLs crmflow calls: http(s), with a host, without credentials, to public addresses.

``url_problem`` checks the shape, on submit (webhook endpoints, automations'
``http`` steps) and again before each call. Where a host name may connect is
decided at call time (``activities.outbound``, which resolves it and checks
each address with ``refused_address``); a host that is an address is checked
on submit too (``address_problem``).
"""

from __future__ import annotations

import ipaddress

from yarl import URL


def url_problem(url: str) -> str | None:
    """Why crmflow does not call ``url``; None for an http(s) URL with a host, no credentials."""
    try:
        parsed = URL(url)
    except ValueError:
        parsed = URL()
    if parsed.scheme not in ("http", "https") or not parsed.host or not parsed.is_absolute():
        return "an http:// or https:// URL with a host"
    if parsed.user is not None or parsed.password is not None:
        return "no credentials in the URL: deliveries are signed instead"
    return None


def refused_address(address: str) -> bool:
    """Whether ``address`` is inside the network or not a unicast public address."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
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
    host = URL(url).host or ""
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if host.lower() in {allowed.lower() for allowed in allowed_hosts} or not refused_address(host):
        return None
    return f"{host} is an address inside the network"
