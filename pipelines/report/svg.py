"""Small inline-SVG charts: stacked bars, horizontal bars, histograms. No dependencies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = {
    "answered": "#2e7d32",
    "no_answer": "#f9a825",
    "busy": "#ef6c00",
    "rejected": "#8e24aa",
    "canceled": "#6d4c41",
    "abandoned": "#c62828",
    "failed": "#455a64",
    "in_progress": "#1e88e5",
}
_FALLBACK = ["#00897b", "#5e35b1", "#d81b60", "#7cb342", "#3949ab", "#fb8c00"]
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def color(name: str, index: int = 0) -> str:
    return PALETTE.get(name, _FALLBACK[index % len(_FALLBACK)])


def _frame(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        + "".join(body)
        + "</svg>"
    )


def stacked_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    width: int = 720,
    height: int = 300,
) -> str:
    """Vertical stacked bars (one bar per label, one colour per series) with a legend."""
    left, bottom, top = 40, 78, 24
    plot_h = height - bottom - top
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    step = (width - left - 10) / max(len(labels), 1)
    bar_w = max(step * 0.8, 1)
    body = [f'<text x="{left}" y="14" {FONT} font-weight="bold">{escape(title)}</text>']
    body.append(f'<text x="4" y="{top + 8}" {FONT}>{peak:g}</text>')
    axis_y = top + plot_h
    body.append(f'<line x1="{left}" y1="{axis_y}" x2="{width - 10}" y2="{axis_y}" stroke="#999"/>')
    for i, label in enumerate(labels):
        x = left + i * step
        y = float(top + plot_h)
        for j, (name, values) in enumerate(series.items()):
            h = values[i] / peak * plot_h
            if h <= 0:
                continue
            y -= h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{color(name, j)}"><title>{escape(label)} {escape(name)}: '
                f"{values[i]:g}</title></rect>"
            )
        if len(labels) <= 31 or i % max(len(labels) // 24, 1) == 0:
            body.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 14}" {FONT} '
                f'transform="rotate(35 {x:.1f} {top + plot_h + 14})">{escape(label)}</text>'
            )
    lx = left
    for j, name in enumerate(series):
        body.append(
            f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{color(name, j)}"/>'
        )
        body.append(f'<text x="{lx + 14}" y="{height - 3}" {FONT}>{escape(name)}</text>')
        lx += 24 + 7 * len(name)
    return _frame(width, height, body, title)


def horizontal_bars(
    rows: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    width: int = 720,
    bar_color: str = "#1e88e5",
    by_label: bool = False,
) -> str:
    """One labelled horizontal bar per row, longest first as given."""
    label_w, row_h, top = 220, 20, 24
    height = top + row_h * max(len(rows), 1) + 8
    peak = max((v for _, v in rows), default=0) or 1
    body = [f'<text x="4" y="14" {FONT} font-weight="bold">{escape(title)}</text>']
    if not rows:
        body.append(f'<text x="4" y="{top + 14}" {FONT}>no data</text>')
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        w = value / peak * (width - label_w - 80)
        body.append(f'<text x="4" y="{y + 14}" {FONT}>{escape(label[:34])}</text>')
        body.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" '
            f'fill="{color(label, i) if by_label else bar_color}">'
            f"<title>{escape(label)}: {value:g}{unit}</title></rect>"
        )
        body.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" {FONT}>{value:g}{unit}</text>')
    return _frame(width, height, body, title)


def histogram(
    edges: Sequence[float], counts: Sequence[int], *, title: str, unit: str, width: int = 720
) -> str:
    """Bars for counts between consecutive edges."""
    labels = [f"{edges[i]:g}–{edges[i + 1]:g}{unit}" for i in range(len(counts))]
    return stacked_bars(labels, {"calls": [float(c) for c in counts]}, title=title, width=width)
