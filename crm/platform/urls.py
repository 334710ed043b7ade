"""Which URLs crmflow calls at all: http(s), with a host, without credentials.

Where such a URL may connect (public addresses only) is decided at call time
(``activities.outbound``); this is the check of its shape, made on submit
(webhook endpoints, automations' ``http`` steps) and again before each call.
"""

from __future__ import annotations

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
