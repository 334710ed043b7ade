"""Templates users write (an automation's email subject and body, a task's title): rendered
in Jinja's sandbox.

The sandbox refuses attribute access to Python internals (``__class__``,
``mro``, ...) and unsafe calls, so a template cannot reach beyond the values
it is given. A missing merge field is an error, never an empty gap in a
customer's email.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

_ENVIRONMENT = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)


class UserTemplateError(ValueError):
    """A user's template does not parse, or cannot render with the values given."""


def template_names(source: str) -> set[str]:
    """The names ``source`` uses that it does not define; raises UserTemplateError."""
    try:
        return set(meta.find_undeclared_variables(_ENVIRONMENT.parse(source)))
    except jinja2.TemplateSyntaxError as err:
        raise UserTemplateError(f"line {err.lineno}: {err.message}") from None


def template_fields(source: str) -> set[tuple[str, str]]:
    """The ``(name, attribute)`` pairs ``source`` reads (``record.amount``: ``("record",
    "amount")``), by attribute or by constant subscript; raises UserTemplateError."""
    try:
        tree = _ENVIRONMENT.parse(source)
    except jinja2.TemplateSyntaxError as err:
        raise UserTemplateError(f"line {err.lineno}: {err.message}") from None
    found: set[tuple[str, str]] = set()
    for read in tree.find_all(nodes.Getattr):
        assert isinstance(read, nodes.Getattr)
        if isinstance(read.node, nodes.Name):
            found.add((read.node.name, read.attr))
    for item in tree.find_all(nodes.Getitem):
        assert isinstance(item, nodes.Getitem)
        if isinstance(item.node, nodes.Name) and isinstance(item.arg, nodes.Const):
            found.add((item.node.name, str(item.arg.value)))
    return found


def render_user_template(source: str, values: Mapping[str, Any]) -> str:
    """``source`` rendered in the sandbox with ``values``; raises UserTemplateError."""
    try:
        return _ENVIRONMENT.from_string(source).render(**values)
    except jinja2.UndefinedError as err:
        raise UserTemplateError(f"undefined merge field: {err.message}") from None
    except jinja2.exceptions.SecurityError as err:
        raise UserTemplateError(f"not allowed in a template: {err}") from None
    except jinja2.TemplateError as err:
        raise UserTemplateError(str(err)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as err:
        # a filter or operator meeting a value it cannot take: the data, not the sandbox
        raise UserTemplateError(f"cannot render with these values: {err}") from None


def render_task_texts(title: str, detail: str, values: Mapping[str, Any]) -> tuple[str, str]:
    """A task's ``title`` (on one line) and ``detail`` templates rendered with ``values``;
    raises UserTemplateError."""
    rendered_title = " ".join(render_user_template(title, values).split())
    return rendered_title, render_user_template(detail, values).strip()
