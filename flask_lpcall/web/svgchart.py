"""A small server-side SVG bar chart (calls per day) for the reports page. No JS, no CDN."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from html import escape

WIDTH = 720
HEIGHT = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 10, 14, 34


def _nice_max(value: int) -> int:
    if value <= 4:
        return max(value, 1)
    magnitude = 10 ** int(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = int(math.ceil(value / (magnitude * step)) * magnitude * step)
        if top >= value:
            return top
    return value


def bar_chart(per_day: Sequence[tuple[date, int]], *, title: str, bar_label: str = "{day}: {count}") -> str:
    """An accessible ``<svg>``: one bar per day, y ticks, a date label every few days.

    ``bar_label`` is the tooltip of a bar (``{day}``, ``{count}`` filled in).
    """
    n = len(per_day)
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    top = _nice_max(max((c for _, c in per_day), default=0))
    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="lpcall-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-label="{escape(title)}">'),
        f"<title>{escape(title)}</title>",
    ]
    ticks = list(range(top + 1)) if top <= 5 else sorted({0, top // 2, top})
    for tick in ticks:
        y = _TOP + plot_h - plot_h * tick / top
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d4da" stroke-width="1"/>')
        parts.append(f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{tick}</text>')
    if n:
        slot = plot_w / n
        bar_w = max(1.0, slot * 0.72)
        every = max(1, math.ceil(n / 10))
        for i, (day, count) in enumerate(per_day):
            x = _LEFT + i * slot + (slot - bar_w) / 2
            h = plot_h * count / top
            y = _TOP + plot_h - h
            tip = escape(bar_label.replace("{day}", day.isoformat()).replace("{count}", str(count)))
            parts.append(
                f'<rect class="bar" data-day="{day.isoformat()}" data-count="{count}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}" fill="#2b6cb0"><title>{tip}</title></rect>'
            )
            if i % every == 0:
                cx = _LEFT + i * slot + slot / 2
                parts.append(
                    f'<text class="day" x="{cx:.1f}" y="{HEIGHT - _BOTTOM + 16}" text-anchor="middle" font-size="11" '
                    f'fill="#555">{day.strftime("%m-%d")}</text>'
                )
    parts.append(
        f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" stroke="#333" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return "".join(parts)
