"""The console's templates and the filters they format values with.

Templates are Jinja with autoescaping on, so every value shown (a process's
step detail, a customer id) is text, never markup.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from crm.store.console_sessions import SignedIn
from crm.store.models import as_utc

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def when(value: datetime | None) -> str:
    """A time as a person reads it, in UTC: ``2026-12-06 14:03 UTC``; empty for None."""
    if value is None:
        return ""
    return as_utc(value).strftime("%Y-%m-%d %H:%M UTC")


def in_zone(value: datetime | None, zone: str) -> str:
    """A time in the IANA zone ``zone``: ``Mon 07 Dec 2026, 09:00``; empty for None."""
    if value is None:
        return ""
    return as_utc(value).astimezone(ZoneInfo(zone)).strftime("%a %d %b %Y, %H:%M")


def duration(seconds: float) -> str:
    """Seconds as the two largest units: ``2d 3h``, ``3h 20m``, ``45m``, ``12s``."""
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{amount}{unit}" for amount, unit in parts if amount][:2]
    return " ".join(shown) or "0s"


def cell(value: Any, unit: str) -> str:
    """A report cell in its unit; an em dash when the value is missing."""
    if value is None or value == "":
        return "—"
    if unit == "count" and isinstance(value, int | float):
        return f"{value:,.0f}"
    if unit == "percent" and isinstance(value, int | float):
        return f"{value:.1f}%"
    if unit == "seconds" and isinstance(value, int | float):
        return duration(value)
    if unit == "money" and isinstance(value, int | float):
        return f"{value:,.2f}"
    return str(value)


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["when"] = when
environment.filters["cell"] = cell
environment.filters["in_zone"] = in_zone


def page_context(session: SignedIn, section: str, title: str) -> dict[str, Any]:
    """What every signed-in page shows: who, their CSRF token, where they are."""
    return {
        "user": session.principal,
        "csrf_token": session.csrf_token,
        "section": section,
        "title": title,
    }


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render template ``name`` with ``context`` as an HTML response."""
    html = environment.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code)
