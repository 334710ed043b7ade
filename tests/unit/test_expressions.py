"""CEL expressions of automations, the events they take, and the templates users write."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from crm.automations.templates import UserTemplateError, render_user_template, template_names
from crm.domain.automation import AutomationDefinition, EndStep, EventMatch, Step, Trigger
from crm.domain.automation_events import enrols, event_names, matches, names_for
from crm.domain.expressions import (
    ExpressionError,
    at_time,
    compiled,
    evaluate,
    holds,
    instant,
    next_anniversary,
    referenced_fields,
    referenced_names,
    typed_fields,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def names(**record: Any) -> dict[str, Any]:
    return {"record": record, "previous": {}, "event": {}, "vars": {}, "now": NOW}


# --- evaluating -------------------------------------------------------------------------------


def test_an_expression_evaluates_over_the_names_given() -> None:
    assert evaluate("record.amount * 2.0", names(amount=21.0)) == 42.0
    assert evaluate('record.name + "!"', names(name="Ana")) == "Ana!"
    assert evaluate("record.tags.exists(t, t == 'vip')", names(tags=["new", "vip"])) is True


def test_a_condition_holds_or_not() -> None:
    assert holds("record.amount >= 10000.0", names(amount=12000.0)) is True
    assert holds("record.amount >= 10000.0", names(amount=9000.0)) is False


def test_a_condition_that_is_not_true_or_false_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="a condition must be true or false") as caught:
        holds("record.amount", names(amount=1.0))

    assert "1.0" in str(caught.value)


def test_an_instant_is_a_utc_timestamp() -> None:
    assert instant('now + duration("90m")', names()) == datetime(2026, 3, 1, 13, 30, tzinfo=UTC)
    paris_noon = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    moved = instant("now", {"now": paris_noon})
    assert moved == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert moved.tzinfo == UTC


def test_a_naive_timestamp_is_taken_as_utc() -> None:
    assert instant("now", {"now": datetime(2026, 3, 1, 12, 0)}) == NOW


def test_an_instant_that_is_not_a_timestamp_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="this must give a timestamp"):
        instant("record.amount", names(amount=1.0))


def test_a_missing_field_is_an_error_naming_it() -> None:
    with pytest.raises(ExpressionError, match="no field 'nope' in the data") as caught:
        evaluate("record.nope == 1", names(amount=1.0))

    assert caught.value.of_data is False


@pytest.mark.parametrize(
    "source",
    ["record.name + 1", "record.amount + 1", "record.name > 1"],
    ids=["string-plus-int", "double-plus-int", "string-compared-to-int"],
)
def test_a_type_mismatch_is_an_error_of_the_expression(source: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(source, names(name="Ana", amount=1.0))

    assert caught.value.of_data is False
    assert "\n" not in str(caught.value)


def test_a_division_by_zero_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate("record.count / 0", names(count=4))


def test_a_syntax_error_is_raised_when_compiling_on_one_line() -> None:
    with pytest.raises(ExpressionError, match="syntax error") as caught:
        compiled("record.amount >")

    assert "\n" not in str(caught.value)
    with pytest.raises(ExpressionError, match="syntax error"):
        evaluate("record.amount >", names(amount=1.0))


def test_an_expression_is_compiled_once() -> None:
    source = "record.amount > 12345.0"

    assert compiled(source) is compiled(source)


# --- typed fields ---------------------------------------------------------------------------------


def test_declared_timestamps_and_doubles_are_typed_for_cel() -> None:
    values = {
        "closes_at": "2026-03-01T10:00:00+01:00",
        "signed_at": "2026-03-01T10:00:00",
        "amount": 5,
        "name": "2026-03-01T10:00:00",
    }
    types = {"closes_at": "timestamp", "signed_at": "timestamp", "amount": "double"}

    typed = typed_fields(values, types)

    assert typed["closes_at"] == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert typed["closes_at"].tzinfo is not None
    assert typed["signed_at"] == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert typed["signed_at"].tzinfo == UTC
    assert typed["amount"] == 5.0
    assert type(typed["amount"]) is float
    assert typed["name"] == "2026-03-01T10:00:00"  # a string field stays a string
    assert values["amount"] == 5  # the input is not changed


def test_values_that_do_not_fit_their_type_are_left_as_they_are() -> None:
    values = {"closes_at": "soon", "signed_at": 1767225600, "amount": "5", "flag": True}
    types = {
        "closes_at": "timestamp",
        "signed_at": "timestamp",
        "amount": "double",
        "flag": "double",
        "missing": "timestamp",
    }

    assert typed_fields(values, types) == values


def test_a_timestamp_field_minus_a_duration_is_that_much_earlier() -> None:
    record = typed_fields({"contract_end": "2026-12-31T00:00:00Z"}, {"contract_end": "timestamp"})

    reminder = instant('record.contract_end - duration("720h")', {"record": record})

    assert reminder == datetime(2026, 12, 1, tzinfo=UTC)
    assert reminder == record["contract_end"] - timedelta(days=30)


# --- next_anniversary and at_time ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "now", "expected"),
    [
        ("1990-06-15", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 6, 15, 7, tzinfo=UTC)),
        ("1990-06-15", datetime(2026, 7, 1, tzinfo=UTC), datetime(2027, 6, 15, 7, tzinfo=UTC)),
        (
            "1990-06-15",
            datetime(2026, 6, 15, 6, 59, tzinfo=UTC),
            datetime(2026, 6, 15, 7, tzinfo=UTC),
        ),
        ("1990-06-15", datetime(2026, 6, 15, 7, tzinfo=UTC), datetime(2027, 6, 15, 7, tzinfo=UTC)),
        ("1990-06-15", datetime(2026, 6, 15, 8, tzinfo=UTC), datetime(2027, 6, 15, 7, tzinfo=UTC)),
        ("1990-01-15", datetime(2026, 3, 1, tzinfo=UTC), datetime(2027, 1, 15, 8, tzinfo=UTC)),
        (
            datetime(1990, 6, 15, 12, tzinfo=UTC),
            datetime(2026, 3, 1, tzinfo=UTC),
            datetime(2026, 6, 15, 7, tzinfo=UTC),
        ),
    ],
    ids=[
        "later-this-year",
        "passed-this-year",
        "same-day-before-the-wall-time",
        "same-day-at-the-wall-time",
        "same-day-after-the-wall-time",
        "winter-time-next-year",
        "date-given-as-a-timestamp",
    ],
)
def test_the_next_anniversary_is_the_first_one_strictly_after_now(
    day: object, now: datetime, expected: datetime
) -> None:
    found = next_anniversary(day, now, "09:00", "Europe/Paris")

    assert found == expected
    assert found.tzinfo == UTC


def test_the_29th_of_february_falls_on_the_28th_in_other_years() -> None:
    assert next_anniversary("2000-02-29", datetime(2026, 1, 1, tzinfo=UTC), "09:00", "UTC") == (
        datetime(2026, 2, 28, 9, tzinfo=UTC)
    )
    assert next_anniversary("2000-02-29", datetime(2027, 3, 1, tzinfo=UTC), "09:00", "UTC") == (
        datetime(2028, 2, 29, 9, tzinfo=UTC)
    )


def test_the_anniversary_is_a_wall_time_of_its_zone_on_either_side_of_a_dst_change() -> None:
    before = next_anniversary("1990-03-28", NOW, "09:00", "Europe/Paris")
    after = next_anniversary("1990-03-29", NOW, "09:00", "Europe/Paris")
    new_york = next_anniversary("1990-01-15", NOW, "09:00", "America/New_York")

    assert before == datetime(2026, 3, 28, 8, tzinfo=UTC)  # CET, +01:00
    assert after == datetime(2026, 3, 29, 7, tzinfo=UTC)  # CEST, +02:00
    assert new_york == datetime(2027, 1, 15, 14, tzinfo=UTC)  # EST, -05:00


def test_a_wall_time_repeated_when_clocks_fall_back_is_its_first_occurrence() -> None:
    found = next_anniversary("1990-10-25", NOW, "02:30", "Europe/Paris")

    assert found == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, not CET


def test_a_wall_time_in_the_spring_forward_gap_is_the_instant_the_clocks_jump() -> None:
    found = next_anniversary("1990-03-29", NOW, "02:30", "Europe/Paris")

    assert found == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST


def test_the_wall_time_of_the_start_of_the_gap_is_the_instant_the_clocks_jump() -> None:
    found = next_anniversary("1990-03-29", NOW, "02:00", "Europe/Paris")

    assert found == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_next_anniversary_is_callable_from_cel() -> None:
    record = {"birthday": "1990-06-15", "timezone": "Europe/Paris"}

    found = instant(
        'next_anniversary(record.birthday, now, "09:00", record.timezone)',
        {"record": record, "now": NOW},
    )

    assert found == datetime(2026, 6, 15, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"birthday": "June 15th", "timezone": "Europe/Paris"}, "is not a date (YYYY-MM-DD)"),
        ({"birthday": "1990-02-30", "timezone": "Europe/Paris"}, "is not a date (YYYY-MM-DD)"),
        ({"birthday": "1990-06-15", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"birthday": "1990-06-15", "timezone": ""}, "unknown time zone"),
    ],
    ids=["not-a-date", "no-such-day", "unknown-zone", "empty-zone"],
)
def test_a_bad_value_in_the_record_is_an_error_of_the_data(
    record: dict[str, Any], message: str
) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)) as caught:
        evaluate(
            'next_anniversary(record.birthday, now, "09:00", record.timezone)',
            {"record": record, "now": NOW},
        )

    assert caught.value.of_data is True


def test_a_bad_wall_time_is_an_error_of_the_data() -> None:
    with pytest.raises(ExpressionError, match="is not a time of day") as caught:
        evaluate('next_anniversary("1990-06-15", now, "9am", "UTC")', {"now": NOW})

    assert caught.value.of_data is True


def test_an_argument_of_the_wrong_type_is_an_error_of_the_expression() -> None:
    with pytest.raises(ExpressionError, match="is not a date") as caught:
        evaluate('next_anniversary(19900615, now, "09:00", "UTC")', {"now": NOW})

    assert caught.value.of_data is False


def test_at_time_is_that_days_wall_time_in_the_zone() -> None:
    evening = datetime(2026, 6, 15, 20, 0, tzinfo=UTC)
    past_midnight_in_paris = datetime(2026, 6, 15, 23, 30, tzinfo=UTC)

    assert at_time(evening, "09:00", "Europe/Paris") == datetime(2026, 6, 15, 7, tzinfo=UTC)
    assert at_time(past_midnight_in_paris, "09:00", "Europe/Paris") == (
        datetime(2026, 6, 16, 7, tzinfo=UTC)
    )
    assert instant('at_time(now, "17:30", "America/New_York")', {"now": evening}) == (
        datetime(2026, 6, 15, 21, 30, tzinfo=UTC)
    )


# --- what an expression refers to ----------------------------------------------------------------


def test_referenced_names_leave_out_comprehension_variables() -> None:
    assert referenced_names("record.tags.exists(t, t == 'vip') && vars.n > 1") == {"record", "vars"}
    assert referenced_names("record.items.map(item, item.price).all(p, p > 0.0)") == {"record"}
    assert referenced_names("foo == 1 && now > event.occurred_at") == {"foo", "now", "event"}


def test_referenced_fields_are_the_record_previous_and_vars_fields_named() -> None:
    source = "record.stage != previous.stage && vars.tries < 3 && event.type == 'updated'"

    assert referenced_fields(source) == {
        ("record", "stage"),
        ("previous", "stage"),
        ("vars", "tries"),
    }
    assert referenced_fields("has(record.birthday) && deal.record.x == 1") == {
        ("record", "birthday")
    }


# --- which events an automation takes ------------------------------------------------------------


def definition(trigger: EventMatch) -> AutomationDefinition:
    return AutomationDefinition(
        id="deal-won",
        name="Deal won",
        object="deal",
        trigger=Trigger(trigger.types, trigger.changed, trigger.condition),
        steps=[Step(id="done", end=EndStep())],
        fields={"stage": "string", "amount": "double"},
    )


WON = definition(
    EventMatch(types=["updated"], changed=["stage"], condition='record.stage == "won"')
)


def event_data(
    d: AutomationDefinition, event_type: str, changed: list[str], **record: Any
) -> dict[str, Any]:
    return names_for(
        d,
        record=record,
        previous={},
        event=event_names(event_type, NOW, changed),
        variables={},
        now=NOW,
    )


def test_an_event_of_the_trigger_enrols_its_record() -> None:
    data = event_data(WON, "updated", ["stage"], stage="won")

    assert enrols(WON, "updated", ["stage", "amount"], data) is True


@pytest.mark.parametrize(
    ("event_type", "changed", "stage"),
    [
        ("created", ["stage"], "won"),
        ("updated", ["amount"], "won"),
        ("updated", [], "won"),
        ("updated", ["stage"], "lost"),
    ],
    ids=["other-type", "other-field-changed", "nothing-changed", "condition-false"],
)
def test_an_event_outside_the_trigger_does_not_enrol(
    event_type: str, changed: list[str], stage: str
) -> None:
    assert (
        enrols(WON, event_type, changed, event_data(WON, event_type, changed, stage=stage)) is False
    )


def test_the_trigger_condition_sees_typed_fields_and_the_event() -> None:
    big = definition(
        EventMatch(
            types=["created"], condition='record.amount >= 10000.0 && event.type == "created"'
        )
    )

    assert enrols(big, "created", [], event_data(big, "created", [], amount=12000)) is True


def test_a_trigger_condition_that_cannot_be_evaluated_raises() -> None:
    with pytest.raises(ExpressionError, match="'stage'"):
        enrols(WON, "updated", ["stage"], event_data(WON, "updated", ["stage"], amount=1.0))


def test_a_condition_is_not_evaluated_for_an_event_the_filters_refuse() -> None:
    match = EventMatch(types=["updated"], condition="record.nope == 1")

    assert matches(match, "created", [], event_data(WON, "created", [])) is False


@pytest.mark.parametrize(
    ("event_type", "changed"),
    [("created", []), ("updated", ["stage"]), ("deleted", ["amount", "stage"])],
)
def test_a_wait_with_no_filters_matches_any_event(event_type: str, changed: list[str]) -> None:
    assert matches(EventMatch(), event_type, changed, {}) is True


def test_a_wait_for_a_change_matches_an_event_changing_one_of_its_fields() -> None:
    match = EventMatch(changed=["csat_score", "status"])

    assert matches(match, "updated", ["status"], {}) is True
    assert matches(match, "updated", ["subject"], {}) is False
    assert matches(match, "created", [], {}) is False


# --- user templates -----------------------------------------------------------------------------


def test_a_user_template_renders_with_the_values_given() -> None:
    rendered = render_user_template(
        "Won: {{ record.name }} ({{ record.amount | round | int }}){% if vars.vip %}!{% endif %}",
        {"record": {"name": "Acme", "amount": 12345.6}, "vars": {"vip": True}},
    )

    assert rendered == "Won: Acme (12346)!"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Dear {{ foo }}", "undefined merge field: 'foo' is undefined"),
        ("Dear {{ record.nope }}", "undefined merge field: 'dict object' has no attribute 'nope'"),
    ],
    ids=["name", "field"],
)
def test_a_missing_merge_field_is_an_error_not_a_gap(source: str, message: str) -> None:
    with pytest.raises(UserTemplateError) as caught:
        render_user_template(source, {"record": {"name": "Acme"}})

    assert str(caught.value) == message


@pytest.mark.parametrize(
    "source",
    [
        "{{ record.__class__.__mro__ }}",
        "{{ record.name.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__ }}",
        "{{ record.name.__init__.__globals__ }}",
    ],
    ids=["class-of-a-dict", "subclasses-of-object", "class-of-a-literal", "globals"],
)
def test_the_sandbox_refuses_python_internals(source: str) -> None:
    with pytest.raises(UserTemplateError, match="not allowed in a template: access to attribute"):
        render_user_template(source, {"record": {"name": "Acme"}})


def test_a_template_that_does_not_parse_is_an_error_with_its_line() -> None:
    with pytest.raises(UserTemplateError, match=r"^line 2: "):
        template_names("Hello\n{{ record.name ")
    with pytest.raises(UserTemplateError):
        render_user_template("{% if %}", {})


def test_template_names_are_the_names_a_template_does_not_define() -> None:
    source = "{{ a.x }} {% set b = 1 %}{{ b }} {% for c in d %}{{ c }}{% endfor %}"

    assert template_names(source) == {"a", "d"}
    assert template_names("no names") == set()


@pytest.mark.parametrize(
    "source",
    ["{{ record.amount | round | int }}", "{{ record.count / 0 }}"],
    ids=["filter-of-the-wrong-type", "division-by-zero"],
)
def test_a_template_that_fails_on_its_values_raises_user_template_error(source: str) -> None:
    with pytest.raises(UserTemplateError):
        render_user_template(source, {"record": {"amount": "12000", "count": 3}})
