"""The dataclasses that travel as payloads keep evaluated annotations.

The SDK's JSON converter calls ``typing.get_type_hints`` on a dataclass for
every payload it decodes into it; with ``from __future__ import annotations``
each of those calls compiles and evaluates every field's annotation string
again (a decode took 2-3 times as long). Modules that define payload types
therefore do without that import.
"""

import dataclasses
import typing

from temporalio import workflow

import workflows.contracts
from worker.main import WORKFLOWS


def payload_types() -> set[type]:
    """Every dataclass a workflow takes, returns, is signalled, queried or updated with,
    and every activity input and result (``workflows.contracts``), with the
    dataclasses their fields hold."""
    found: set[type] = set()

    def walk(hint: object) -> None:
        for argument in typing.get_args(hint):
            walk(argument)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and hint not in found:
            found.add(hint)
            for field_hint in typing.get_type_hints(hint).values():
                walk(field_hint)

    for workflow_class in WORKFLOWS:
        definition = workflow._Definition.from_class(workflow_class)
        assert definition is not None
        handlers = [
            definition.run_fn,
            *(signal.fn for signal in definition.signals.values()),
            *(query.fn for query in definition.queries.values()),
            *(update.fn for update in definition.updates.values()),
        ]
        for handler in handlers:
            for hint in typing.get_type_hints(handler).values():
                walk(hint)
    for value in vars(workflows.contracts).values():
        walk(value)
    return found


def string_annotated(classes: set[type]) -> list[str]:
    return sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in classes
        if any(isinstance(field.type, str) for field in dataclasses.fields(cls))
    )


def test_every_payload_type_has_evaluated_annotations() -> None:
    classes = payload_types()

    assert len(classes) > 30  # the walk reaches the processes' inputs, contracts and nested types
    assert string_annotated(classes) == []


def test_a_postponed_annotation_is_caught() -> None:
    late = dataclasses.make_dataclass(
        "Late", [("name", "str")]
    )  # as the __future__ import leaves it

    assert string_annotated({late}) == ["types.Late"]
