"""The report's inline SVG charts as geometry: shapes with coordinates and plain-text labels.

No markup is built here. The page template draws each `Shape` as one SVG element with Jinja2's
autoescape on, so a model id or a label can only ever be text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .present import JUDGE_SCALE, Interval, fmt, histogram_bins, interval_text

PALETTE = ("#2f6db5", "#d9822b", "#3a9a5b", "#b5405a", "#7a5cb8", "#8a6d3b", "#3b8a8a")
UNSCORED_FILL = "#c9ced8"
MUTED = "#5d6778"
INK = "#1d2330"
LABEL_CHARS = 26  # a longer model id is cut in the comparison chart (the full one is its tooltip)
SHAPES = frozenset({"line", "rect", "text", "path"})


@dataclass(frozen=True)
class Shape:
    """One SVG element: its tag, attributes, text content and tooltip (`<title>` child)."""

    tag: str
    attrs: dict[str, str | float]
    text: str = ""
    title: str | None = None

    def __post_init__(self) -> None:
        # The tag is written into the page as is: only the few the charts need.
        if self.tag not in SHAPES:
            raise ValueError(f"not a chart shape: {self.tag!r}")


@dataclass(frozen=True)
class Chart:
    """An SVG chart: its CSS class (`histogram`, `comparison`), title, size and shapes in paint
    order."""

    kind: str
    title: str
    width: float
    height: float
    shapes: tuple[Shape, ...]


def _r(value: float) -> float:
    """A coordinate to one decimal: the page stays small and diffs stay readable."""
    return round(value, 1)


def _text(
    x: float, y: float, text: str, anchor: str | None = None, title: str | None = None, **attrs: str
) -> Shape:
    extra: dict[str, str | float] = {"text-anchor": anchor} if anchor else {}
    return Shape("text", {"x": _r(x), "y": _r(y), **extra, **attrs}, text, title)


def histogram(
    title: str,
    values: Sequence[float | None],
    color: str = PALETTE[0],
    scale: tuple[int, int] = JUDGE_SCALE,
) -> Chart | None:
    """How many rows got each score (and how many were left unscored); None without rows."""
    bars = histogram_bins(values, scale)
    if not bars:
        return None
    bar_w, gap, left, top, plot_h, bottom = 34, 8, 34, 14, 120, 34
    # At least wide enough for the axis caption below (about 120 px at 11 px) with one bar.
    width = max(left + len(bars) * (bar_w + gap) + gap, 170)
    height = top + plot_h + bottom
    base = top + plot_h
    peak = max(count for _, count, _ in bars) or 1
    shapes = [
        Shape("line", {"class": "axis", "x1": left, "y1": base, "x2": width, "y2": base}),
        Shape("line", {"class": "axis", "x1": left, "y1": top, "x2": left, "y2": base}),
        _text(left - 4, top + 4, str(peak), "end"),
        _text(left - 4, base, "0", "end"),
    ]
    for i, (label, count, is_unscored) in enumerate(bars):
        x = left + gap + i * (bar_w + gap)
        h = plot_h * count / peak
        fill = UNSCORED_FILL if is_unscored else color
        rect = {"class": "bar", "x": x, "y": _r(base - h), "width": bar_w, "height": _r(h)}
        shapes.append(Shape("rect", {**rect, "fill": fill}, title=f"{label}: {count} row(s)"))
        if count:
            shapes.append(_text(x + bar_w / 2, base - h - 3, str(count), "middle"))
        shapes.append(_text(x + bar_w / 2, base + 14, "n/a" if is_unscored else label, "middle"))
    caption = "score (n/a: unscored)"
    shapes.append(_text(left + (width - left) / 2, height - 4, caption, "middle", fill=MUTED))
    return Chart("histogram", title, width, height, tuple(shapes))


def _nice_max(value: float) -> float:
    """The axis end: the next 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def comparison(title: str, items: Sequence[tuple[str, float | None, Interval | None]]) -> Chart:
    """Horizontal bars, one per (model, value, interval): the value, its interval as a whisker."""
    label_w, bar_h, gap, top, plot_w, right = 170, 18, 10, 8, 320, 60
    height = top + len(items) * (bar_h + gap) + 24
    width = label_w + plot_w + right
    ends = [v for _, value, ci in items for v in (value, *(ci or ())) if v is not None]
    scale_min = min(0.0, min(ends, default=0.0))
    span = (_nice_max(max(ends, default=1.0)) - scale_min) or 1.0

    def x(value: float) -> float:
        return _r(label_w + plot_w * (value - scale_min) / span)

    shapes: list[Shape] = []
    for tick in range(5):
        value = scale_min + span * tick / 4
        grid = {"class": "grid", "x1": x(value), "y1": top, "x2": x(value), "y2": height - 20}
        shapes += [Shape("line", grid), _text(x(value), height - 6, fmt(value, 3), "middle")]
    for i, (label, value, interval) in enumerate(items):
        y = top + i * (bar_h + gap)
        baseline = y + bar_h - 5
        short = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        shapes.append(_text(label_w - 8, baseline, short, "end", title=label))
        if value is None:
            shapes.append(_text(label_w + 4, baseline, "no score"))
            continue
        bar = {"class": "bar", "x": x(min(0.0, value)), "y": y}
        bar |= {
            "width": _r(abs(x(value) - x(0.0))),
            "height": bar_h,
            "fill": PALETTE[i % len(PALETTE)],
        }
        tooltip = f"{label}: {fmt(value)} {interval_text(interval)}".rstrip()
        shapes.append(Shape("rect", bar, title=tooltip))
        end = x(value)
        if interval is not None:
            lo, hi, mid = x(interval[0]), x(interval[1]), y + bar_h / 2
            whisker = f"M{lo},{mid - 5}v10M{lo},{mid}H{hi}M{hi},{mid - 5}v10"
            style = {"stroke": INK, "stroke-width": 1.5, "fill": "none"}
            shapes.append(Shape("path", {"class": "ci", "d": whisker, **style}))
            end = max(end, hi)
        shapes.append(_text(end + 6, baseline, fmt(value, 3)))
    axis = {"class": "axis", "x1": x(0.0), "y1": top, "x2": x(0.0), "y2": height - 20}
    shapes.append(Shape("line", axis))
    return Chart("comparison", title, width, height, tuple(shapes))


def win_bar(title: str, parts: Sequence[tuple[str, int]]) -> Chart:
    """One stacked bar of (label, count): a pair's wins, ties, losses and unscored rows, each
    part's width its share of the rows, its count written inside when it fits."""
    width, height, bar_h, top = 490, 44, 20, 4
    total = sum(n for _, n in parts) or 1
    fills = (PALETTE[2], UNSCORED_FILL, PALETTE[3], "#eceef2")
    shapes, x = [], 0.0
    for (label, count), fill in zip(parts, fills):
        w = width * count / total
        if count:
            rect = {"class": "bar", "x": _r(x), "y": top, "width": _r(w), "height": bar_h}
            shapes.append(Shape("rect", {**rect, "fill": fill}, title=f"{label}: {count} row(s)"))
            if w >= 24:
                shapes.append(_text(x + w / 2, top + 14, str(count), "middle"))
        x += w
    legend = " · ".join(f"{label} {count}" for label, count in parts)
    shapes.append(_text(0, height - 4, legend, fill=MUTED))
    return Chart("winbar", title, width, height, tuple(shapes))
