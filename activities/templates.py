"""Email templates: a subject line and a plain-text body with merge fields.

A template file ``<name>.j2`` reads like the email it renders: a first line
``Subject: ...``, a blank line, then the body. Merge fields are Jinja2
expressions; a missing field is an error, never an empty gap in a customer's
email.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from crm.automations.templates import UserTemplateError, render_user_template

TEMPLATE_DIR = Path(__file__).parent / "templates"


class TemplateError(ValueError):
    """A template is unknown, malformed or misses a merge field."""


@dataclass(frozen=True)
class RenderedEmail:
    """A template rendered with its merge fields."""

    subject: str
    body: str


class EmailTemplates:
    """Loads and renders the templates in one directory."""

    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )

    def render(self, name: str, context: dict[str, Any]) -> RenderedEmail:
        """Render template ``name`` with ``context``; raises TemplateError."""
        try:
            text = self._env.get_template(f"{name}.j2").render(**context)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"unknown email template {name!r}") from None
        except jinja2.UndefinedError as err:
            raise TemplateError(f"template {name!r}: {err.message}") from err
        except jinja2.TemplateError as err:
            raise TemplateError(f"template {name!r} is invalid: {err}") from err
        return _as_email(name, text)

    def render_user(self, subject: str, body: str, context: dict[str, Any]) -> RenderedEmail:
        """A user's ``subject`` and ``body`` templates rendered in the sandbox; raises
        TemplateError."""
        try:
            return RenderedEmail(
                subject=" ".join(render_user_template(subject, context).split()),
                body=render_user_template(body, context).strip() + "\n",
            )
        except UserTemplateError as err:
            raise TemplateError(str(err)) from err


def _as_email(name: str, text: str) -> RenderedEmail:
    """A rendered template file split into its ``Subject:`` line and body."""
    head, _, body = text.partition("\n\n")
    if not head.startswith("Subject:"):
        raise TemplateError(f"template {name!r} must start with a 'Subject:' line")
    subject = " ".join(head.removeprefix("Subject:").split())
    return RenderedEmail(subject=subject, body=body.strip() + "\n")
