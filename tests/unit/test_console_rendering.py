"""The console's server-drawn charts and its cell formats."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from xml.etree import ElementTree

from api.console.charts import Series, bar_chart
from api.console.rendering import cell, duration, environment

SVG = "{http://www.w3.org/2000/svg}"


def test_a_chart_draws_one_bar_per_period_and_series_with_a_readable_title() -> None:
    svg = bar_chart(
        "SLA", ["2026-11-02", "2026-11-09"], [Series("met", [3, 5]), Series("breached", [1, 0])]
    )

    root = ElementTree.fromstring(svg)
    bars = [rect for rect in root.iter(f"{SVG}rect") if rect.find(f"{SVG}title") is not None]
    assert len(bars) == 4
    titles = [bar.findtext(f"{SVG}title") for bar in bars]
    assert "met, 2026-11-09: 5" in titles and "breached, 2026-11-02: 1" in titles
    tallest = max(bars, key=lambda bar: float(bar.get("height", "0")))
    assert tallest.findtext(f"{SVG}title") == "met, 2026-11-09: 5"
    assert float(bars[3].get("height", "-1")) == 0.0  # breached 0 in the second week


def test_an_empty_range_says_so_instead_of_drawing_nothing() -> None:
    assert "Nothing in this range" in bar_chart("SLA", [], [])
    assert "Nothing in this range" in bar_chart("SLA", ["2026-11-02"], [Series("met", [0])])


def test_labels_are_text_not_markup() -> None:
    svg = bar_chart("<b>x</b>", ["<script>"], [Series("<img src=x>", [1])])

    ElementTree.fromstring(svg)  # still well-formed
    assert "<script>" not in svg and "<img" not in svg and "<b>" not in svg


def test_cells_read_in_their_units() -> None:
    assert cell(1234, "count") == "1,234"
    assert cell(97.456, "percent") == "97.5%"
    assert cell(None, "percent") == "—"
    assert cell(12345.5, "money") == "12,345.50"
    assert cell(3 * 3600 + 20 * 60 + 5, "seconds") == "3h 20m"
    assert duration(2 * 86400 + 3 * 3600) == "2d 3h"
    assert duration(0) == "0s"


def test_templates_escape_what_they_show() -> None:
    html = environment.from_string("<p>{{ value }}</p>").render(value="<script>alert(1)</script>")
    assert re.fullmatch(r"<p>&lt;script&gt;alert\(1\)&lt;/script&gt;</p>", html)


def test_a_timeline_step_shows_the_details_it_has_and_not_the_empty_ones() -> None:
    entry = {
        "recorded_at": datetime(2026, 12, 6, 14, 3, tzinfo=UTC),
        "process": "approval",
        "process_id": "approval-q-7",
        "step": "decision",
        "detail": {"decided_by": "mgr-hana", "on_behalf_of": None, "comment": "ok"},
    }
    html = environment.get_template("timeline.html").render(customer_id="c-1", entries=[entry])

    assert "decided_by: mgr-hana · comment: ok</span>" in html
    assert "on_behalf_of" not in html


def test_period_labels_are_spaced_so_that_none_overlaps() -> None:
    weeks = [f"2026-{month:02d}-{day:02d}" for month in (9, 10, 11) for day in (7, 14, 21, 28)]
    weeks.append("2026-12-05")  # thirteen weeks, as the default range shows
    svg = bar_chart("SLA", weeks, [Series("met", [1.0] * len(weeks))])

    root = ElementTree.fromstring(svg)
    labels = [t for t in root.iter(f"{SVG}text") if t.text in weeks]
    xs = [float(t.get("x", "0")) for t in labels]
    assert 1 < len(labels) < len(weeks)
    assert min(b - a for a, b in itertools.pairwise(xs)) >= 7.0 * len("2026-09-07")
    assert labels[0].text == weeks[0]
    assert bar_chart("SLA", ["", ""], [Series("met", [1.0, 2.0])])  # labels of no length
    two = bar_chart("SLA", weeks[:2], [Series("met", [1.0, 2.0])])
    assert sum(t.text in weeks for t in ElementTree.fromstring(two).iter(f"{SVG}text")) == 2
