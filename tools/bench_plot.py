"""SVG plot of a `tools/bench.py` run: each figure against store size N.

Written by hand so the benchmark needs no plotting library.  One small
panel per figure, both axes logarithmic, one line per engine; a line that
stays flat as N grows is a figure that does not depend on the store's
size.  Used by ``python tools/bench.py --plot``; on its own::

    python tools/bench_plot.py bench-results/bench-TIME.json
"""

from __future__ import annotations

import json
import math
import sys
from html import escape
from typing import Any

# (figure key, panel title); every panel is log-log.
PANELS: tuple[tuple[str, str], ...] = (
    ("insert_per_s", "insert/s (higher is better)"),
    ("update_per_s", "update/s (higher is better)"),
    ("get_per_s", "random get/s (higher is better)"),
    ("scan_warm_per_s", "scan docs/s, warm (higher is better)"),
    ("insert_us_last_1k", "us/insert, last 1,000 (lower is better)"),
    ("open_warm_ms", "open ms, warm (lower is better)"),
    ("disk_mb", "disk MB, file sizes (lower is better)"),
    ("peak_rss_mb", "peak RSS MB (lower is better)"),
)
COLOURS = (
    "#1b6ac9",
    "#7fb2f0",
    "#c2410c",
    "#f59e63",
    "#7c3aed",
    "#15803d",
    "#86c98f",
    "#6b7280",
)
COLUMNS = 4
PANEL_W = 300
PANEL_H = 220
PAD_LEFT = 52
PAD_RIGHT = 14
PAD_TOP = 30
PAD_BOTTOM = 34
LEGEND_ROW = 18


def _si(value: float) -> str:
    """Compact label for a power of ten or a size: 1k, 10M, 0.01."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


def _series(
    results: dict[str, Any], key: str
) -> dict[str, list[tuple[int, float]]]:
    """Per engine, the (N, value) points of figure `key` that exist."""
    found: dict[str, list[tuple[int, float]]] = {}
    for engine in results["engines"]:
        points = []
        for size_text, size_result in results["sizes"].items():
            figures = size_result["engines"][engine]["figures"]
            value = figures.get(key)
            if value is not None and value > 0:
                points.append((int(size_text), float(value)))
        if points:
            found[engine] = sorted(points)
    return found


def _panel(
    results: dict[str, Any],
    key: str,
    title: str,
    left: float,
    top: float,
    colours: dict[str, str],
) -> list[str]:
    """The SVG elements of one panel whose corner is (left, top)."""
    parts = [
        f'<text x="{left + PANEL_W / 2:.1f}" y="{top + 16:.1f}" '
        f'text-anchor="middle" font-weight="bold">{escape(title)}</text>'
    ]
    series = _series(results, key)
    x0, x1 = left + PAD_LEFT, left + PANEL_W - PAD_RIGHT
    y0, y1 = top + PANEL_H - PAD_BOTTOM, top + PAD_TOP
    parts.append(
        f'<rect x="{x0:.1f}" y="{y1:.1f}" width="{x1 - x0:.1f}" '
        f'height="{y0 - y1:.1f}" fill="none" stroke="#999"/>'
    )
    if not series:
        parts.append(
            f'<text x="{(x0 + x1) / 2:.1f}" y="{(y0 + y1) / 2:.1f}" '
            'text-anchor="middle" fill="#999">n/a</text>'
        )
        return parts
    sizes = sorted({int(size) for size in results["sizes"]})
    values = [value for points in series.values() for _, value in points]
    low = math.floor(math.log10(min(values)))
    high = math.ceil(math.log10(max(values)))
    if high == low:
        high += 1
    lx0, lx1 = math.log10(sizes[0]), math.log10(sizes[-1])

    def x_of(size: int) -> float:
        if lx1 == lx0:
            return (x0 + x1) / 2
        share = (math.log10(size) - lx0) / (lx1 - lx0)
        return x0 + 12 + share * (x1 - x0 - 24)

    def y_of(value: float) -> float:
        share = (math.log10(value) - low) / (high - low)
        return y0 - share * (y0 - y1)

    for power in range(low, high + 1):
        y = y_of(10.0**power)
        parts.append(
            f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}" '
            'stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{x0 - 4:.1f}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_si(10.0**power)}</text>"
        )
    for size in sizes:
        x = x_of(size)
        parts.append(
            f'<text x="{x:.1f}" y="{y0 + 16:.1f}" text-anchor="middle">'
            f"N={_si(size)}</text>"
        )
    for engine, points in series.items():
        colour = colours[engine]
        coords = " ".join(f"{x_of(n):.1f},{y_of(v):.1f}" for n, v in points)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        for n, v in points:
            parts.append(
                f'<circle cx="{x_of(n):.1f}" cy="{y_of(v):.1f}" r="3" '
                f'fill="{colour}"><title>{escape(engine)}: {v:.4g}</title>'
                "</circle>"
            )
    return parts


def render(results: dict[str, Any]) -> str:
    """The whole SVG document for the results of one benchmark run."""
    engines = list(results["engines"])
    colours = {
        engine: COLOURS[index % len(COLOURS)]
        for index, engine in enumerate(engines)
    }
    rows = math.ceil(len(PANELS) / COLUMNS)
    legend_rows = math.ceil(len(engines) / COLUMNS)
    width = COLUMNS * PANEL_W
    height = rows * PANEL_H + 20 + legend_rows * LEGEND_ROW + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="18" font-size="13" font-weight="bold">'
        f"Sentinel peer benchmark, {escape(results['meta']['started'])}"
        "</text>",
    ]
    for index, (key, title) in enumerate(PANELS):
        left = (index % COLUMNS) * PANEL_W
        top = 24 + (index // COLUMNS) * PANEL_H
        parts.extend(_panel(results, key, title, left, top, colours))
    base = 24 + rows * PANEL_H + 10
    for index, engine in enumerate(engines):
        x = 20 + (index % COLUMNS) * PANEL_W
        y = base + (index // COLUMNS) * LEGEND_ROW
        label = results["engines"][engine]["label"]
        parts.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" '
            f'stroke="{colours[engine]}" stroke-width="3"/>'
        )
        parts.append(f'<text x="{x + 28}" y="{y + 4}">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    """Render the JSON file named in `argv` next to it as ``.svg``."""
    if len(argv) != 1:
        print("usage: python tools/bench_plot.py RESULTS.json")
        return 2
    with open(argv[0]) as handle:
        results = json.load(handle)
    target = argv[0].rsplit(".", 1)[0] + ".svg"
    with open(target, "w") as handle:
        handle.write(render(results))
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
