"""A record's fields as the API takes them: any JSON value, but no NaN or infinity.

JSON has neither, yet the parser reads ``NaN``, ``Infinity`` and ``1e400``
as them; a record holding one would reach expressions, templates and stored
runs (``nan seats`` in an email). ``FieldValue`` refuses them with a 422
naming the field (``record.seats``) and where in it the number is.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator


def _finite(value: Any) -> Any:
    """``value``, a record's field as sent, when every number in it is finite: JSON has no
    NaN or infinity, but the parser takes ``NaN``, ``Infinity`` and ``1e400`` for them.
    Raises ValueError naming the first other number and where it is in the field."""
    found = _first_not_finite(value, "")
    if found is None:
        return value
    where, number = found
    if not where:
        raise ValueError(f"must be a finite number, not {number}")
    raise ValueError(f"must hold finite numbers only, not {number} at {where}")


def _first_not_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The first number of ``value`` that is not finite and where it is (``lines[0].price``,
    under ``path``); None when every number is finite."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, dict):
        inner = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
    elif isinstance(value, list):
        inner = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        return None
    for where, item in inner:
        if (found := _first_not_finite(item, where)) is not None:
            return found
    return None


#: A field of a record: any JSON value without a NaN or an infinity in it.
FieldValue = Annotated[Any, AfterValidator(_finite)]
