"""Draw time and peak memory against model size from ``bench.py large`` JSON, as a dependency-free SVG.

    .venv/bin/python benchmarks/bench.py large > large.json && .venv/bin/python benchmarks/plot.py large.json docs/performance.svg
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def panel(series: dict[str, list[tuple[float, float]]], x0: int, title: str, unit: str) -> list[str]:
    width, height, left, bottom = 420, 300, 60, 40
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x_max, y_max = max(xs) * 1.05, max(ys) * 1.1

    def px(x: float, y: float) -> tuple[float, float]:
        return x0 + left + x / x_max * (width - left - 10), 30 + (height - bottom) * (1 - y / y_max)

    out = [f'<text x="{x0 + width / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
    ox, oy = px(0, 0)
    out.append(f'<line x1="{ox}" y1="{oy}" x2="{x0 + width - 10}" y2="{oy}" stroke="black"/>')
    out.append(f'<line x1="{ox}" y1="{oy}" x2="{ox}" y2="30" stroke="black"/>')
    for k in range(5):
        value = y_max * k / 4
        _, y = px(0, value)
        out.append(f'<text x="{ox - 5}" y="{y + 4}" text-anchor="end" font-size="10">{value:.1f}</text>')
        out.append(f'<line x1="{ox}" y1="{y}" x2="{x0 + width - 10}" y2="{y}" stroke="#ddd"/>')
    for k in range(5):
        value = x_max * k / 4
        x, _ = px(value, 0)
        out.append(f'<text x="{x}" y="{oy + 15}" text-anchor="middle" font-size="10">{value:.0f}</text>')
    out.append(f'<text x="{x0 + width / 2}" y="{oy + 32}" text-anchor="middle" font-size="11">weights (MiB)</text>')
    out.append(f'<text x="{x0 + 14}" y="{30 + (height - bottom) / 2}" font-size="11" transform="rotate(-90 {x0 + 14} {30 + (height - bottom) / 2})" text-anchor="middle">{unit}</text>')
    for index, (name, points) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        path = " ".join(f"{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            cx, cy = px(x, y)
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}"/>')
        out.append(f'<text x="{x0 + left + 8}" y="{48 + 14 * index}" font-size="10" fill="{color}">{name}</text>')
    return out


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    rows = list(data.values())
    # every command measured at some size, in first-seen order (one .onnx file stops at 2 GiB: its row ends)
    names = list(dict.fromkeys(k for r in rows for k in r if isinstance(r[k], dict)))
    time_series = {n: [(r["weights_mib"], r[n]["seconds"]) for r in rows if n in r] for n in names}
    rss_series = {n: [(r["weights_mib"], r[n]["peak_rss_mib"]) for r in rows if n in r] for n in names}
    body = panel(time_series, 0, "conversion time", "seconds") + panel(rss_series, 440, "peak RSS", "MiB")
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="880" height="320" font-family="sans-serif">{"".join(body)}</svg>'
    Path(sys.argv[2]).write_text(svg + "\n")


if __name__ == "__main__":
    main()
