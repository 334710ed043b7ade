"""Charts drawn on the server as SVG: no script and no asset from elsewhere.

A report's counts per period become grouped bars, one colour per series,
with a legend and a ``<title>`` on every bar that screen readers and a
hovering mouse both read. The SVG scales to its container's width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

#: Series colours, told apart by people with the common colour-vision deficiencies.
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b")

WIDTH = 720
HEIGHT = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 12, 40
#: The room a period label takes per character at font size 11, its gap included.
_LABEL_CHAR = 7.0


@dataclass(frozen=True)
class Series:
    """One bar per period: a named quantity (``met``, ``breached``...)."""

    label: str
    values: list[float]


def bar_chart(title: str, periods: list[str], series: list[Series]) -> str:
    """The SVG of ``series`` as grouped bars over ``periods``; an empty chart says so."""
    peak = max((value for one in series for value in one.values), default=0.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 24 * _legend_rows(series)}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    plot_width = WIDTH - _LEFT - _RIGHT
    plot_height = HEIGHT - _TOP - _BOTTOM
    baseline = _TOP + plot_height
    parts.append(
        f'<line x1="{_LEFT}" y1="{baseline}" x2="{WIDTH - _RIGHT}" y2="{baseline}" '
        'stroke="#94a3b8"/>'
    )
    if not periods or peak <= 0:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#64748b">'
            "Nothing in this range</text></svg>"
        )
        return "".join(parts)
    scale = _nice_ceiling(peak)
    for fraction in (0.5, 1.0):
        y = baseline - plot_height * fraction
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" '
            'stroke="#e2e8f0"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#475569">{_number(scale * fraction)}</text>'
        )
    slot = plot_width / len(periods)
    bar = max(1.0, (slot * 0.8) / max(1, len(series)))
    label_every = max(1, math.ceil(_LABEL_CHAR * max(map(len, periods)) / slot))  # no overlap
    for index, period in enumerate(periods):
        left = _LEFT + index * slot + slot * 0.1
        for number, one in enumerate(series):
            value = one.values[index] if index < len(one.values) else 0.0
            height = plot_height * value / scale
            parts.append(
                f'<rect x="{left + number * bar:.1f}" y="{baseline - height:.1f}" '
                f'width="{bar:.1f}" height="{height:.1f}" fill="{PALETTE[number % len(PALETTE)]}">'
                f"<title>{escape(one.label)}, {escape(period)}: {_number(value)}</title></rect>"
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{left + slot * 0.4:.1f}" y="{baseline + 16}" text-anchor="middle" '
                f'font-size="11" fill="#475569">{escape(period)}</text>'
            )
    for number, one in enumerate(series):
        row, column = divmod(number, 4)
        x = _LEFT + column * 170
        y = HEIGHT + row * 24
        parts.append(
            f'<rect x="{x}" y="{y - 10}" width="12" height="12" '
            f'fill="{PALETTE[number % len(PALETTE)]}"/>'
            f'<text x="{x + 18}" y="{y}" font-size="12" fill="#0f172a">{escape(one.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _legend_rows(series: list[Series]) -> int:
    return (len(series) + 3) // 4


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above ``value``: a scale a reader can read."""
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
