"""The simulation report: one self-contained HTML file with inline SVG charts, and PNG export.

No external script, style sheet or font: the file opens offline, anywhere. The charts:

1. **Storage used over time**: TillVault's used bytes against the capacity (which shrinks on
   an ageing device), the pressure level shaded behind, the naive store's use beside it, and
   the events marked (surge days, outages, update download, settlements, offloads, the first
   refusal, the naive store's first lost order).
2. **Runway forecast against what happened**: the forecast made each evening, and the days
   the store really had left (known when it filled within the run).
3. **TillVault against the naive store**: sales lost, settlements failed, refused before
   authorization, bytes per transaction, peak usage.

Then the settlement table (the terminal's totals beside the host's). Each chart has a
"Save PNG" button (drawn by the browser, inline script); :func:`export_png` writes the same
PNGs from the command line through headless Chromium where it is installed.
"""

from __future__ import annotations

import html
import itertools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
LEVEL_COLOURS = {
    "normal": None,
    "watch": "#fff3bf",
    "high": "#ffd8a8",
    "critical": "#ffa8a8",
    "exhausted": "#e03131",
}
TV_COLOUR = "#1c7ed6"
NAIVE_COLOUR = "#e8590c"
CAP_COLOUR = "#212529"
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Noto Sans CJK SC',sans-serif"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MIB:.1f} MiB"


def _num(n: Any) -> str:
    if n is None:
        return "-"
    if isinstance(n, float):
        return f"{n:,.1f}"
    if isinstance(n, int):
        return f"{n:,}"
    return str(n)


def _money(minor: int | None) -> str:
    return "-" if minor is None else f"¥{minor / 100:,.2f}"


class _Axes:
    """Maps data to a plot box inside an SVG."""

    def __init__(self, width: int, height: int, left: int, right: int, top: int, bottom: int) -> None:
        self.w, self.h = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = height - bottom, top
        self.xmin, self.xmax, self.ymin, self.ymax = 0.0, 1.0, 0.0, 1.0

    def x(self, v: float) -> float:
        span = (self.xmax - self.xmin) or 1.0
        return round(self.x0 + (v - self.xmin) / span * (self.x1 - self.x0), 2)

    def y(self, v: float) -> float:
        span = (self.ymax - self.ymin) or 1.0
        return round(self.y0 - (v - self.ymin) / span * (self.y0 - self.y1), 2)


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(1, target)
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _path(points: list[tuple[float, float]]) -> str:
    if not points:
        return ""
    head, *rest = points
    return f"M{head[0]},{head[1]}" + "".join(f"L{x},{y}" for x, y in rest)


def storage_chart(timeline: dict[str, Any], figures: dict[str, Any]) -> str:
    """Chart 1: storage used over time, pressure shaded, events marked (an SVG element)."""
    pts = timeline["points"]
    days = timeline["days"]
    ax = _Axes(980, 400, 70, 20, 76, 46)
    ax.xmin, ax.xmax = 0.0, days * 24.0
    top = max(
        [p["capacity"] for p in pts]
        + [p["used"] for p in pts]
        + [p["naive_capacity"] or 0 for p in pts]
        + [p["naive"] or 0 for p in pts]
        + [1]
    )
    ax.ymin, ax.ymax = 0.0, top * 1.05
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart-storage" class="chart" width="{ax.w}" height="{ax.h}" '
        f'viewBox="0 0 {ax.w} {ax.h}" role="img" aria-label="Storage used over time" style="{FONT}">',
        f'<rect x="0" y="0" width="{ax.w}" height="{ax.h}" fill="#ffffff"/>',
        f'<text x="{ax.x0}" y="18" font-size="15" font-weight="600">Storage used over time</text>',
    ]
    # Pressure shading, merged into runs of one level.
    runs: list[tuple[float, float, str]] = []
    for a, b in itertools.pairwise(pts):
        level = b["level"]
        if runs and runs[-1][2] == level and abs(runs[-1][1] - a["h"]) < 1e-9:
            runs[-1] = (runs[-1][0], b["h"], level)
        else:
            runs.append((a["h"], b["h"], level))
    for h0, h1, level in runs:
        colour = LEVEL_COLOURS.get(level)
        if colour:
            out.append(
                f'<rect class="pressure pressure-{_e(level)}" x="{ax.x(h0)}" y="{ax.y1}" '
                f'width="{max(0.5, ax.x(h1) - ax.x(h0))}" height="{ax.y0 - ax.y1}" fill="{colour}" opacity="0.8">'
                f"<title>pressure {_e(level)}</title></rect>"
            )
    # Event lane above the plot: surges, outages.
    lane = ax.y1 - 14
    for h0, h1 in timeline.get("surges", []):
        out.append(
            f'<rect class="surge" x="{ax.x(h0)}" y="{lane}" width="{ax.x(h1) - ax.x(h0)}" height="9" fill="#9c36b5">'
            "<title>surge day (×10 volume)</title></rect>"
        )
    for h0, h1 in timeline.get("outages", []):
        h1 = min(h1, ax.xmax)
        out.append(
            f'<rect class="outage" x="{ax.x(h0)}" y="{ax.y1}" width="{ax.x(h1) - ax.x(h0)}" '
            f'height="{ax.y0 - ax.y1}" fill="url(#hatch)" opacity="0.9"><title>network outage</title></rect>'
        )
        out.append(
            f'<rect x="{ax.x(h0)}" y="{lane}" width="{ax.x(h1) - ax.x(h0)}" height="9" fill="#495057">'
            "<title>network and archive unreachable</title></rect>"
        )
    for h0, h1 in timeline.get("settlement_outages", []):
        h1 = min(h1, ax.xmax)
        out.append(
            f'<rect class="settlement-outage" x="{ax.x(h0)}" y="{lane}" width="{ax.x(h1) - ax.x(h0)}" height="9" '
            'fill="#c2255c"><title>the acquirer refuses settlements</title></rect>'
        )
    out.insert(
        2,
        '<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="8" height="8" fill="none"/><line x1="0" y1="0" x2="0" y2="8" stroke="#868e96" '
        'stroke-width="2" opacity="0.35"/></pattern></defs>',
    )
    # Grid and axes.
    step = _nice_step(ax.ymax / MIB, 5) * MIB
    v = 0.0
    while v <= ax.ymax:
        y = ax.y(v)
        out.append(f'<line x1="{ax.x0}" x2="{ax.x1}" y1="{y}" y2="{y}" stroke="#dee2e6" stroke-width="1"/>')
        out.append(f'<text x="{ax.x0 - 6}" y="{y + 4}" font-size="11" text-anchor="end">{v / MIB:g} MiB</text>')
        v += step
    dstep = max(1, int(_nice_step(days, 10)))
    for d in range(0, days + 1, dstep):
        x = ax.x(d * 24.0)
        out.append(f'<line x1="{x}" x2="{x}" y1="{ax.y0}" y2="{ax.y0 + 4}" stroke="#495057"/>')
        out.append(f'<text x="{x}" y="{ax.y0 + 16}" font-size="11" text-anchor="middle">{d}</text>')
    out.append(f'<text x="{(ax.x0 + ax.x1) / 2}" y="{ax.h - 8}" font-size="12" text-anchor="middle">day</text>')
    out.append(f'<line x1="{ax.x0}" x2="{ax.x1}" y1="{ax.y0}" y2="{ax.y0}" stroke="#495057"/>')
    # Lines: capacity (step), naive, TillVault.
    cap: list[tuple[float, float]] = []
    for p in pts:
        if cap:
            cap.append((ax.x(p["h"]), cap[-1][1]))
        cap.append((ax.x(p["h"]), ax.y(p["capacity"])))
    out.append(
        f'<path class="series series-capacity" d="{_path(cap)}" fill="none" stroke="{CAP_COLOUR}" '
        'stroke-width="1.5" stroke-dasharray="6 4"/>'
    )
    if any(p.get("naive") is not None for p in pts):
        naive = [(ax.x(p["h"]), ax.y(p["naive"])) for p in pts if p.get("naive") is not None]
        out.append(
            f'<path class="series series-naive" d="{_path(naive)}" fill="none" stroke="{NAIVE_COLOUR}" '
            'stroke-width="2"/>'
        )
    used = [(ax.x(p["h"]), ax.y(p["used"])) for p in pts]
    out.append(
        f'<path class="series series-tillvault" d="{_path(used)}" fill="none" stroke="{TV_COLOUR}" stroke-width="2.2"/>'
    )
    # Event markers.
    base = ax.y0
    for ev in timeline.get("events", []):
        x = ax.x(ev["h"])
        kind, label = ev["kind"], _e(ev["label"])
        if kind == "settlement":
            out.append(
                f'<line class="event event-settlement" x1="{x}" x2="{x}" y1="{base - 9}" y2="{base}" '
                f'stroke="#2f9e44" stroke-width="2"><title>{label}</title></line>'
            )
        elif kind in ("offload", "evict"):
            colour = "#1971c2" if kind == "offload" else "#0b7285"
            out.append(
                f'<path class="event event-{kind}" d="M{x - 5},{ax.y1 + 2}L{x + 5},{ax.y1 + 2}L{x},{ax.y1 + 10}Z" '
                f'fill="{colour}"><title>{label}</title></path>'
            )
        elif kind in ("update", "update_failed"):
            out.append(
                f'<circle class="event event-update" cx="{x}" cy="{lane + 4.5}" r="5" fill="#f08c00">'
                f"<title>{label}</title></circle>"
            )
        elif kind in ("media_error", "repaired", "unrepaired"):
            colour = {"media_error": "#e8590c", "repaired": "#2f9e44"}.get(kind, "#c92a2a")
            y = lane + 4.5
            out.append(
                f'<path class="event event-{kind}" d="M{x},{y - 5}L{x + 5},{y}L{x},{y + 5}L{x - 5},{y}Z" '
                f'fill="{colour}"><title>{label}</title></path>'
            )
        elif kind in ("refusal", "naive_lost", "settlement_failed", "settlement_deferred"):
            colour = {"refusal": TV_COLOUR, "naive_lost": NAIVE_COLOUR}.get(kind, "#c92a2a")
            y = ax.y1 + 22
            cross = f"M{x - 5},{y - 5}L{x + 5},{y + 5}M{x - 5},{y + 5}L{x + 5},{y - 5}"
            out.append(
                f'<g class="event event-{kind}"><path d="{cross}" stroke="{colour}" stroke-width="2.5"/>'
                f"<title>{label}</title></g>"
            )
    # Legend.
    items = [
        ("line", TV_COLOUR, "TillVault used"),
        ("line", NAIVE_COLOUR, "naive store used"),
        ("dash", CAP_COLOUR, "capacity"),
        ("box", LEVEL_COLOURS["watch"], "watch"),
        ("box", LEVEL_COLOURS["high"], "high"),
        ("box", LEVEL_COLOURS["critical"], "critical"),
        ("box", LEVEL_COLOURS["exhausted"], "exhausted"),
        ("box", "#9c36b5", "surge"),
        ("box", "#495057", "outage"),
        ("box", "#c2255c", "settlement down"),
        ("tick", "#2f9e44", "settlement"),
        ("tri", "#1971c2", "offload"),
        ("dot", "#f08c00", "update download"),
        ("x", TV_COLOUR, "first refusal"),
        ("x", NAIVE_COLOUR, "naive: first order lost"),
        ("x", "#c92a2a", "settlement deferred"),
    ]
    kinds = {ev["kind"] for ev in timeline.get("events", [])}
    if kinds & {"media_error", "repaired", "unrepaired"}:
        items += [("diamond", "#e8590c", "bad sector"), ("diamond", "#2f9e44", "repaired by scrub")]
    if "unrepaired" in kinds:
        items.append(("diamond", "#c92a2a", "not repairable"))
    x = ax.x0
    y = 36
    for shape, colour, label in items:
        if x + 30 + 6.5 * len(label) > ax.x1:
            x, y = ax.x0, y + 18
        if shape == "line":
            out.append(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="3"/>')
        elif shape == "dash":
            out.append(
                f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-dasharray="5 3"/>'
            )
        elif shape == "tick":
            out.append(f'<line x1="{x + 9}" x2="{x + 9}" y1="{y - 10}" y2="{y}" stroke="{colour}" stroke-width="2"/>')
        elif shape == "tri":
            out.append(f'<path d="M{x + 4},{y - 9}L{x + 14},{y - 9}L{x + 9},{y - 1}Z" fill="{colour}"/>')
        elif shape == "dot":
            out.append(f'<circle cx="{x + 9}" cy="{y - 4}" r="5" fill="{colour}"/>')
        elif shape == "diamond":
            diamond = f"M{x + 9},{y - 9}L{x + 14},{y - 4}L{x + 9},{y + 1}L{x + 4},{y - 4}Z"
            out.append(f'<path d="{diamond}" fill="{colour}"/>')
        elif shape == "x":
            out.append(
                f'<path d="M{x + 4},{y - 9}L{x + 14},{y + 1}M{x + 4},{y + 1}L{x + 14},{y - 9}" stroke="{colour}" '
                'stroke-width="2.5"/>'
            )
        else:
            out.append(f'<rect x="{x}" y="{y - 10}" width="18" height="10" fill="{colour}" stroke="#adb5bd"/>')
        out.append(f'<text x="{x + 22}" y="{y}" font-size="11">{_e(label)}</text>')
        x += 30 + 6.5 * len(label)
    out.append("</svg>")
    return "".join(out)


def runway_chart(figures: dict[str, Any]) -> str:
    """Chart 2: the runway forecast made each evening against the days really left."""
    rows = figures.get("runway_forecast_days") or []
    days = figures.get("days_simulated") or figures["scenario"]["days"]
    ax = _Axes(980, 300, 70, 20, 40, 46)
    ax.xmin, ax.xmax = 0.0, float(days)
    values = [r[1] for r in rows if r[1] is not None] + [r[2] for r in rows if r[2] is not None]
    cap = max(30.0, days * 1.0)
    ymax = min(max([*values, float(days)]), cap * 3)
    ax.ymin, ax.ymax = 0.0, ymax * 1.08 or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart-runway" class="chart" width="{ax.w}" height="{ax.h}" '
        f'viewBox="0 0 {ax.w} {ax.h}" role="img" aria-label="Runway forecast against what happened" style="{FONT}">',
        f'<rect x="0" y="0" width="{ax.w}" height="{ax.h}" fill="#ffffff"/>',
        f'<text x="{ax.x0}" y="18" font-size="15" font-weight="600">Runway: forecast against what happened</text>',
    ]
    step = _nice_step(ax.ymax, 5)
    v = 0.0
    while v <= ax.ymax:
        y = ax.y(v)
        out.append(f'<line x1="{ax.x0}" x2="{ax.x1}" y1="{y}" y2="{y}" stroke="#dee2e6"/>')
        out.append(f'<text x="{ax.x0 - 6}" y="{y + 4}" font-size="11" text-anchor="end">{v:g} d</text>')
        v += step
    for d in range(0, days + 1, max(1, int(_nice_step(days, 10)))):
        x = ax.x(d)
        out.append(f'<text x="{x}" y="{ax.y0 + 16}" font-size="11" text-anchor="middle">{d}</text>')
    out.append(f'<line x1="{ax.x0}" x2="{ax.x1}" y1="{ax.y0}" y2="{ax.y0}" stroke="#495057"/>')
    out.append(f'<text x="{(ax.x0 + ax.x1) / 2}" y="{ax.h - 8}" font-size="12" text-anchor="middle">day</text>')

    def clip(v: float) -> float:
        return min(v, ax.ymax)

    forecast = [(ax.x(r[0]), ax.y(clip(r[1]))) for r in rows if r[1] is not None]
    actual = [(ax.x(r[0]), ax.y(clip(r[2]))) for r in rows if r[2] is not None]
    left = [(ax.x(r[0]), ax.y(clip(days - r[0]))) for r in rows]
    if left and not actual:
        out.append(
            f'<path class="series series-run-left" d="{_path(left)}" fill="none" stroke="#868e96" '
            'stroke-dasharray="4 4" stroke-width="1.5"><title>days left in the run (the store did not fill: '
            "what happened is at least this)</title></path>"
        )
    if forecast:
        out.append(
            f'<path class="series series-forecast" d="{_path(forecast)}" fill="none" stroke="{TV_COLOUR}" '
            'stroke-width="2.2"/>'
        )
        out.extend(
            f'<circle class="point-forecast" cx="{x}" cy="{y}" r="2.5" fill="{TV_COLOUR}"/>' for x, y in forecast
        )
    if actual:
        out.append(
            f'<path class="series series-actual" d="{_path(actual)}" fill="none" stroke="#2f9e44" stroke-width="2.2"/>'
        )
    items = [(TV_COLOUR, "forecast runway (evening)", "")]
    if actual:
        items.append(("#2f9e44", "days the store really had left", ""))
    else:
        items.append(("#868e96", "days left in run", "4 4"))
    x = ax.x0
    for colour, label, dash in items:
        out.append(
            f'<line x1="{x}" x2="{x + 18}" y1="30" y2="30" stroke="{colour}" stroke-width="3" '
            f'stroke-dasharray="{dash}"/>'
        )
        out.append(f'<text x="{x + 22}" y="34" font-size="11">{_e(label)}</text>')
        x += 40 + 6.5 * len(label)
    if not forecast:
        out.append(
            f'<text x="{(ax.x0 + ax.x1) / 2}" y="{(ax.y0 + ax.y1) / 2}" font-size="13" text-anchor="middle">'
            "no forecast yet: the forecast needs three days of growth</text>"
        )
    out.append("</svg>")
    return "".join(out)


def comparison_rows(figures: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """(what, TillVault, naive, unit) rows of the side-by-side comparison."""
    b = figures.get("baseline") or {}
    return [
        ("sales lost (card charged, no record)", figures["lost"], b.get("lost"), "count"),
        ("settlements failed", figures["settlement_failures"], b.get("settlement_failures"), "count"),
        ("refused before authorization", figures["refused_for_space"], b.get("refused_for_space"), "count"),
        ("bytes per transaction", figures["bytes_per_transaction"], b.get("bytes_per_transaction"), "B"),
        ("peak usage", figures["peak_used_bytes"], b.get("peak_used_bytes"), "bytes"),
    ]


def comparison_chart(figures: dict[str, Any]) -> str:
    """Chart 3: TillVault against the naive store, one pair of bars per figure (own scale each)."""
    rows = comparison_rows(figures)
    width, row_h, left = 980, 46, 300
    height = 40 + row_h * len(rows) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart-compare" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="TillVault against the naive store" style="{FONT}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        '<text x="20" y="18" font-size="15" font-weight="600">TillVault against the naive store (same workload, '
        "same capacity)</text>",
    ]
    span = width - left - 160
    for i, (label, tv, naive, unit) in enumerate(rows):
        y = 40 + i * row_h
        out.append(f'<text x="20" y="{y + 20}" font-size="12">{_e(label)}</text>')
        top = max(float(tv or 0), float(naive or 0), 1e-9)
        for j, (value, colour, who) in enumerate(((tv, TV_COLOUR, "TillVault"), (naive, NAIVE_COLOUR, "naive"))):
            v = float(value or 0)
            w = max(1.5, v / top * span) if value is not None else 0
            yy = y + 4 + j * 18
            text = _mib(v) if unit == "bytes" else _num(value)
            out.append(
                f'<rect class="bar bar-{"tillvault" if j == 0 else "naive"}" x="{left}" y="{yy}" width="{round(w, 2)}" '
                f'height="15" fill="{colour}"><title>{who}: {_e(text)}</title></rect>'
            )
            out.append(f'<text x="{left + w + 6}" y="{yy + 12}" font-size="11">{who}: {_e(text)}</text>')
    out.append("</svg>")
    return "".join(out)


_SCRIPT = """
function savePng(id){
  var svg=document.getElementById(id); var data=new XMLSerializer().serializeToString(svg);
  var img=new Image(); var w=svg.width.baseVal.value, h=svg.height.baseVal.value;
  img.onload=function(){var c=document.createElement('canvas'); c.width=w*2; c.height=h*2;
    var g=c.getContext('2d'); g.scale(2,2); g.drawImage(img,0,0);
    var a=document.createElement('a'); a.download=id+'.png'; a.href=c.toDataURL('image/png'); a.click();};
  img.src='data:image/svg+xml;charset=utf-8,'+encodeURIComponent(data);
}
"""

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Noto Sans CJK SC',sans-serif;
  margin:24px auto;max-width:1020px;color:#212529;padding:0 12px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #dee2e6;padding:4px 8px;text-align:right} th{background:#f1f3f5}
td:first-child,th:first-child{text-align:left}
.ok{color:#2f9e44;font-weight:600} .bad{color:#c92a2a;font-weight:600}
.chart{display:block;margin:8px 0;border:1px solid #e9ecef}
button{font-size:12px;margin:2px 0 12px 0} .muted{color:#868e96;font-size:12px}
.caption{font-size:13px;margin:2px 0}
"""


def captions(figures: dict[str, Any]) -> dict[str, str]:
    """One sentence under each chart, computed from the figures."""
    b = figures.get("baseline") or {}
    days = figures.get("days_simulated") or figures["scenario"]["days"]
    storage = (
        f"TillVault peaked at {_mib(figures['peak_used_bytes'])} of {_mib(figures['capacity_bytes'])} and lost "
        f"{figures['lost']:,} transactions."
    )
    if b:
        storage += (
            f" The naive store filled on {b['full_at'][:10]} and lost {b['lost']:,} paid orders."
            if b.get("full_at")
            else f" The naive store peaked at {_mib(b['peak_used_bytes'])} and did not fill."
        )
    rows = [r for r in figures.get("runway_forecast_days") or [] if r[1] is not None]
    if not rows:
        runway = "Too few days for a forecast (it needs three days of growth)."
    elif any(r[2] is not None for r in rows):
        first = next(r for r in rows if r[2] is not None)
        runway = (
            f"The store ran out of space for sales {first[2]:g} days after day {first[0]}; the forecast that evening "
            f"said {first[1]:g} days."
        )
    else:
        mean = sum(r[1] for r in rows) / len(rows)
        runway = (
            f"The store did not fill within the run (at least {days - rows[0][0]} days from day {rows[0][0]}); "
            f"the forecast averaged {mean:.1f} days" + (", so it was pessimistic." if mean < days - rows[0][0] else ".")
        )
    compare = "Same requests, same authorization outcomes, same capacity (shrinking alike on an ageing device)."
    return {"chart-storage": storage, "chart-runway": runway, "chart-compare": compare}


def render_html(figures: dict[str, Any], timeline: dict[str, Any]) -> str:
    """The whole report as one HTML document (no external resources)."""
    sc = figures["scenario"]
    b = figures.get("baseline") or {}
    charts = [
        ("chart-storage", storage_chart(timeline, figures)),
        ("chart-runway", runway_chart(figures)),
        ("chart-compare", comparison_chart(figures)),
    ]

    def verdict(ok: bool) -> str:
        return '<span class="ok">yes</span>' if ok else '<span class="bad">NO</span>'

    side = "".join(
        f"<tr><td>{_e(label)}</td><td>{_e(_mib(tv) if unit == 'bytes' else _num(tv))}</td>"
        f"<td>{_e(_mib(nv) if unit == 'bytes' else _num(nv))}</td></tr>"
        for label, tv, nv, unit in comparison_rows(figures)
    )
    scenario = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
        for k, v in (
            ("days", sc["days"]),
            ("sales a day (weekday base)", f"{sc['per_day']:,}"),
            ("surge days", ", ".join(str(d) for d in sc["surge_days"]) or "none"),
            ("surge factor", f"×{sc['surge']:g}"),
            ("capacity", _mib(sc["capacity_bytes"])),
            ("ageing (capacity lost by the end)", f"{sc['ageing'] * 100:g}%"),
            ("outages (host and archive)", "; ".join(sc["outages"]) or "none"),
            ("settlement system down", "; ".join(sc.get("settlement_outages", [])) or "never"),
            ("update download", f"{_mib(sc['update_bytes'])} on day {sc['update_day']}"),
            ("seed", sc["seed"]),
            ("batch settles at", f"{sc['batch_max']:,} transactions"),
        )
    )
    settle_rows = "".join(
        f"<tr><td>{r['batch']}</td><td>{_e(r['closed'] or '-')}</td><td>{r['sales_count']:,}</td>"
        f"<td>{_money(r['sales_amount'])}</td><td>{r['refunds_count']:,}</td><td>{_money(r['refunds_amount'])}</td>"
        f"<td>{r['voided_count']:,}</td><td>{r['host_sales_count']:,}</td><td>{_money(r['host_sales_amount'])}</td>"
        f"<td>{verdict(r['balanced'])}</td><td>{verdict(r['reconciled'])}</td></tr>"
        for r in figures.get("settlement_table", [])
    )
    naive_rows = "".join(
        f"<tr><td>{_e(r['business_date'])}</td><td>{verdict(r['ok'])}</td><td>{_money(r['net_amount_app'])}</td>"
        f"<td>{_money(r['net_amount_cards'])}</td><td>{verdict(r['balanced'])}</td></tr>"
        for r in b.get("settlement_rows", [])
    )
    checks = "".join(
        f"<tr><td>{_e(k)}</td><td>{v}</td></tr>"
        for k, v in (
            ("zero approved transactions lost", verdict(figures["lost"] == 0)),
            ("zero settlements failed", verdict(figures["settlement_failures"] == 0)),
            ("every refusal before authorization", verdict(bool(figures["refusals_before_authorization"]))),
            ("terminal totals = host totals, every batch", verdict(bool(figures["totals_reconcile"]))),
        )
    )
    notes_for = captions(figures)
    chart_html = "".join(
        f'<div class="figure">{svg}<p class="caption">{_e(notes_for[cid])}</p>'
        f"<button onclick=\"savePng('{cid}')\">Save PNG</button></div>"
        for cid, svg in charts
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in figures.get("notes", []))
    data = json.dumps({"figures": {k: v for k, v in figures.items() if k != "settlement_table"}}, default=str)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>TillVault simulation: {sc['days']} days</title><style>{_STYLE}</style></head><body>"
        f"<h1>TillVault simulation: {figures.get('days_simulated', sc['days'])} days of a busy shop</h1>"
        f'<p class="muted">Simulated from {_e(timeline["start"][:10])}; {figures["sales_attempted"]:,} sales '
        f"attempted through the real terminal, host and archive; the naive store took the same requests.</p>"
        f"<h2>Side by side</h2><table><tr><th>figure</th><th>TillVault</th><th>naive JSON store</th></tr>{side}</table>"
        f"<h2>Invariants</h2><table>{checks}</table>"
        f"<h2>Charts</h2>{chart_html}"
        "<h2>Settlements (terminal against host)</h2>"
        "<table><tr><th>batch</th><th>closed</th><th>sales</th><th>amount</th><th>refunds</th><th>amount</th>"
        "<th>voided</th><th>host sales</th><th>host amount</th><th>balanced</th><th>reconciled</th></tr>"
        f"{settle_rows}</table>"
        "<h2>Naive store: daily closing</h2><table><tr><th>business date</th><th>closing written</th>"
        f"<th>net (its records)</th><th>net (cards charged)</th><th>balanced</th></tr>{naive_rows}</table>"
        f"<h2>Scenario</h2><table>{scenario}</table>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + f'<script type="application/json" id="figures">{html.escape(data, quote=False)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_report(path: Path | str, figures: dict[str, Any], timeline: dict[str, Any]) -> Path:
    """Write the report to ``path``; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(figures, timeline), encoding="utf-8")
    return path


def chromium_path() -> str | None:
    """The Chromium (or Chrome) executable, if one is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_args(executable: str, profile_dir: Path) -> list[str]:
    """Headless Chromium that stays off the network and keeps its state in ``profile_dir``."""
    return [
        executable,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile_dir}",
    ]


def export_png(figures: dict[str, Any], timeline: dict[str, Any], out_dir: Path | str) -> list[Path]:
    """Write each chart as a PNG through headless Chromium; returns the files.

    :raises RuntimeError: no Chromium is installed (the HTML report's buttons still work).
    """
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("no chromium found: install Debian's chromium to export PNGs from the command line")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    charts = {
        "storage": storage_chart(timeline, figures),
        "runway": runway_chart(figures),
        "compare": comparison_chart(figures),
    }
    with tempfile.TemporaryDirectory(prefix="tillvault-png-") as tmp:
        for name, svg in charts.items():
            w = int(svg.split('width="', 1)[1].split('"', 1)[0])
            h = int(svg.split('height="', 1)[1].split('"', 1)[0])
            page = Path(tmp) / f"{name}.html"
            page.write_text(
                f'<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{{margin:0}}</style></head>'
                f"<body>{svg}</body></html>",
                encoding="utf-8",
            )
            target = out / f"{name}.png"
            cmd = [*chromium_args(exe, Path(tmp) / "profile"), f"--window-size={w},{h}", f"--screenshot={target}"]
            subprocess.run([*cmd, page.as_uri()], capture_output=True, timeout=120, check=False)
            if not target.exists():
                raise RuntimeError(f"chromium did not write {target}")
            written.append(target)
    return written
