"""Server-side SVG bar charts: geometry computed here, drawn by the templates.

No charting service and no script: a chart is a handful of ``<rect>`` elements with a text
label and value each, and a ``<title>`` for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Bar", "BarChart", "bar_chart"]

_WIDTH: Final = 360
_BAR_HEIGHT: Final = 18
_GAP: Final = 8
_LABEL_WIDTH: Final = 110
_VALUE_WIDTH: Final = 50


@dataclass(frozen=True, slots=True)
class Bar:
    """One horizontal bar."""

    label: str
    value: int
    y: int
    width: int
    css: str
    """A class name (``bar-unsafe``, ``bar-critical``...) the stylesheet colours."""


@dataclass(frozen=True, slots=True)
class BarChart:
    """A titled horizontal bar chart."""

    title: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int
    bar_area: int


def bar_chart(title: str, data: Sequence[tuple[str, int]], *, css_prefix: str = "bar") -> BarChart:
    """Bars for ``(label, value)`` pairs, longest bar = largest value."""
    area = _WIDTH - _LABEL_WIDTH - _VALUE_WIDTH
    top = max((v for _, v in data), default=0)
    bars = tuple(
        Bar(
            label=label,
            value=value,
            y=i * (_BAR_HEIGHT + _GAP),
            # A non-zero value never draws as nothing.
            width=0 if top == 0 or value == 0 else max(2, round(area * value / top)),
            css=f"{css_prefix}-{label}" if label.isalnum() else css_prefix,
        )
        for i, (label, value) in enumerate(data)
    )
    height = max(_BAR_HEIGHT, len(bars) * (_BAR_HEIGHT + _GAP) - _GAP)
    return BarChart(title, bars, _WIDTH, height, _LABEL_WIDTH, area)
