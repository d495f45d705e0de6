"""Geometry for the server-drawn SVG charts (templates reports/_line_chart.html, _bar_chart.html).

Plain numbers in, coordinates out; the templates draw them with a title, a
description and a data table beside them, so the chart is never the only way
to read the figures. No JavaScript.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass(frozen=True)
class Tick:
    at: float
    label: str
    anchor: str = "middle"  # the first and last date labels keep inside the chart


@dataclass(frozen=True)
class ChartFrame:
    """What every chart draws around its data: its size, plot area and axis ticks."""

    width: int
    height: int
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    plot_left: int
    plot_right: int
    plot_bottom: int
    empty: bool

    @property
    def center_x(self) -> float:
        return self.width / 2

    @property
    def center_y(self) -> float:
        return self.height / 2


@dataclass(frozen=True, kw_only=True)
class LineChart(ChartFrame):
    path: str  # "M x y L x y ..." with a new "M" after each gap
    points: list[tuple[float, float]]


def _x(index: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span * index / (count - 1) if count > 1 else span / 2)


def line_chart(days: Sequence[dt.date], values: Sequence[float | None], *, y_max: float = 1.0) -> LineChart:
    """One line over ``days`` (oldest first); ``None`` is a gap. ``values`` run from 0 to ``y_max``."""
    plot_h = HEIGHT - TOP - BOTTOM
    segments: list[str] = []
    points: list[tuple[float, float]] = []
    pen_down = False
    for i, value in enumerate(values):
        if value is None:
            pen_down = False
            continue
        x = _x(i, len(values))
        y = TOP + plot_h * (1 - min(max(value / y_max, 0.0), 1.0))
        segments.append(f"{'L' if pen_down else 'M'} {x:.1f} {y:.1f}")
        points.append((round(x, 1), round(y, 1)))
        pen_down = True
    y_ticks = [Tick(at=TOP + plot_h * (1 - f), label=f"{round(f * y_max * 100)}%") for f in (0, 0.25, 0.5, 0.75, 1)]
    x_ticks: list[Tick] = []
    if days:
        for i in sorted({0, len(days) // 2, len(days) - 1}):
            anchor = "start" if i == 0 else "end" if i == len(days) - 1 else "middle"
            x_ticks.append(Tick(at=_x(i, len(days)), label=days[i].strftime("%d %b"), anchor=anchor))
    return LineChart(
        width=WIDTH,
        height=HEIGHT,
        path=" ".join(segments),
        points=points,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        plot_left=LEFT,
        plot_right=WIDTH - RIGHT,
        plot_bottom=HEIGHT - BOTTOM,
        empty=not points,
    )


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True, kw_only=True)
class BarChart(ChartFrame):
    bars: list[Bar]


def bar_chart(days: Sequence[dt.date], values: Sequence[int], *, height: int = 140) -> BarChart:
    """One bar per day (oldest first), scaled to the largest value."""
    plot_h = height - TOP - BOTTOM
    top = max(values, default=0) or 1
    span = WIDTH - LEFT - RIGHT
    slot = span / max(len(values), 1)
    bars = []
    for i, value in enumerate(values):
        h = plot_h * value / top
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.15, 1),
                y=round(TOP + plot_h - h, 1),
                width=round(slot * 0.7, 1),
                height=round(h, 1),
                label=f"{days[i]:%d %b}: {value}",
            )
        )
    y_ticks = [Tick(at=TOP + plot_h * (1 - f), label=str(round(top * f))) for f in (0, 0.5, 1)]
    x_ticks = [
        Tick(at=LEFT + i * slot + slot / 2, label=days[i].strftime("%d %b"), anchor="start" if i == 0 else "end")
        for i in sorted({0, len(days) - 1})
        if days
    ]
    return BarChart(
        width=WIDTH,
        height=height,
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        plot_left=LEFT,
        plot_right=WIDTH - RIGHT,
        plot_bottom=height - BOTTOM,
        empty=not any(values),
    )
