"""Charts drawn on the server as SVG: no chart library, no script, nothing from a CDN.

`stacked_bars(...)` draws one bar per time bucket, stacked by series (channels or outcomes),
with a y axis rounded to a readable maximum, a few time labels and an accessible title.
Every text is XML-escaped; colours come from a fixed palette keyed by series name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

WIDTH = 720
HEIGHT = 240
MARGIN_LEFT = 48
MARGIN_RIGHT = 12
MARGIN_TOP = 12
MARGIN_BOTTOM = 28

PALETTE: dict[str, str] = {
    "delivered": "#2e7d32",
    "undeliverable": "#c62828",
    "rejected": "#ad1457",
    "expired": "#ef6c00",
    "cancelled": "#757575",
    "in_flight": "#1565c0",
    "queued": "#64b5f6",
    "accepted": "#90caf9",
    "sms": "#1565c0",
    "voice": "#6a1b9a",
    "fax": "#00838f",
    "push": "#f9a825",
}
FALLBACK = ("#37474f", "#8d6e63", "#5c6bc0", "#26a69a", "#d4e157", "#ff7043")


def colour(series: str, index: int = 0) -> str:
    key = series.split(":", 1)[0].lower()
    return PALETTE.get(key) or PALETTE.get(series.lower()) or FALLBACK[index % len(FALLBACK)]


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above `value` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)


def stacked_bars(
    title: str,
    buckets: Sequence[datetime],
    series: Mapping[str, Sequence[int]],
    *,
    time_format: str = "%H:%M",
) -> str:
    """An SVG document fragment. `series[name][i]` is the count of `name` in `buckets[i]`."""
    names = [name for name, values in series.items() if any(values)]
    count = len(buckets)
    totals = [sum(series[name][i] for name in names) for i in range(count)]
    top = max(4, nice_ceiling(max(totals, default=0)))  # at least 4: whole-number ticks
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_w / max(count, 1)
    bar_w = max(1.0, slot * 0.8)
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-label={quoteattr(title)}>',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(5):
        value = top * step / 4
        y = MARGIN_TOP + plot_h - plot_h * step / 4
        out.append(
            f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - MARGIN_RIGHT}" y2="{y:.1f}"'
            ' stroke="#e0e4ea" stroke-width="1"/>'
        )
        label = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
        out.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11"'
            f' fill="#5f6b7a">{label}</text>'
        )
    for i in range(count):
        x = MARGIN_LEFT + slot * i + (slot - bar_w) / 2
        base = float(MARGIN_TOP + plot_h)
        for index, name in enumerate(names):
            value = series[name][i]
            if not value:
                continue
            h = plot_h * value / top
            base -= h
            out.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}"'
                f' fill="{colour(name, index)}"><title>{escape(name)}'
                f" {escape(buckets[i].strftime(time_format))}: {value}</title></rect>"
            )
    labels = min(count, 6)
    for j in range(labels):
        i = round(j * (count - 1) / max(labels - 1, 1)) if count > 1 else 0
        x = MARGIN_LEFT + slot * i + slot / 2
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11"'
            f' fill="#5f6b7a">{escape(buckets[i].strftime(time_format))}</text>'
        )
    if not names:
        out.append(
            f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle"'
            ' font-size="13" fill="#8a94a3">no traffic in this period</text>'
        )
    out.append("</svg>")
    return "".join(out)


def legend(names: Sequence[str]) -> list[tuple[str, str]]:
    """(name, colour) pairs in the order the chart stacks them."""
    return [(name, colour(name, index)) for index, name in enumerate(names)]
