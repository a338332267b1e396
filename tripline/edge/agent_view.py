"""The agent's view of an alert: one self-contained HTML page for an agent-desktop iframe.

Rendered on the server from what Redis holds (no script, no external asset), so it shows in the
most locked-down desktop: the sensor, the customer's local time, the alert and the alerts grouped
into the same call, the decision history, and the sensor's recent readings against the
threshold as an inline SVG chart.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_W, _H, _PAD = 520, 170, 28


# The page's one inline style: the agent page's Content-Security-Policy allows it by its hash.
STYLE = """
 body { font: 14px/1.4 system-ui, sans-serif; margin: .8rem; color: #1f2328; }
 h1 { font-size: 1.1rem; margin: 0 0 .4rem; } h2 { font-size: .95rem; margin: 1rem 0 .3rem; }
 dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .8rem; margin: 0; }
 dt { color: #57606a; } dd { margin: 0; }
 table { border-collapse: collapse; }
 td { padding: .1rem .5rem; border-bottom: 1px solid #eaeef2; }
 .muted { color: #57606a; }
 .value { font-size: 1.3rem; font-weight: 600; color: #cf222e; }
 svg polyline { fill: none; stroke: #0969da; stroke-width: 2; }
 svg .threshold { stroke: #cf222e; stroke-dasharray: 5 4; }
 svg text { font-size: 11px; fill: #cf222e; }
 svg circle.firing { fill: #cf222e; } svg circle.ok { fill: #1a7f37; }
"""


def _e(value: Any) -> str:  # noqa: ANN401
    return html.escape("" if value is None else str(value))


def local_time(zone: str, now: float) -> str:
    """The customer's wall-clock time, or '' for an unknown zone."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    return datetime.fromtimestamp(now, tz).strftime("%a %d %b %H:%M (%Z)")


def chart(readings: list[dict[str, Any]]) -> str:
    """An SVG line of the readings (oldest left) and a dashed line at the threshold."""
    points = [r for r in readings if isinstance(r.get("value"), int | float)]
    if not points:
        return '<p class="muted">No readings recorded.</p>'
    points.reverse()  # stored newest first; readings inside one second keep their order
    points.sort(key=lambda r: r.get("at", 0))
    values = [float(r["value"]) for r in points]
    threshold = float(points[-1].get("threshold", values[-1]))
    low, high = min([*values, threshold]), max([*values, threshold])
    span = (high - low) or 1.0
    low, high = low - span * 0.1, high + span * 0.1

    def y(v: float) -> float:
        return _H - _PAD - (v - low) / (high - low) * (_H - 2 * _PAD)

    step = (_W - 2 * _PAD) / max(1, len(points) - 1)
    xy = [(_PAD + i * step, y(v)) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in xy)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="3" class="{"firing" if r.get("firing") else "ok"}">'
        f"<title>{_e(r.get('value'))} {_e(r.get('unit'))}</title></circle>"
        for (x, yy), r in zip(xy, points, strict=True)
    )
    ty = y(threshold)
    unit = _e(points[-1].get("unit"))
    return (
        f'<svg id="readings" role="img" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
        f'aria-label="{len(points)} readings against the threshold {threshold:g} {unit}">'
        f'<line class="threshold" x1="{_PAD}" x2="{_W - _PAD}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
        f'<text x="{_W - _PAD}" y="{ty - 4:.1f}" text-anchor="end">threshold {threshold:g} '
        f"{unit}</text>"
        f'<polyline points="{line}"/>{dots}</svg>'
    )


def render(
    *,
    reference_id: str,
    alert: dict[str, Any],
    record: dict[str, Any] | None,
    grouped: list[dict[str, Any]],
    readings: list[dict[str, Any]],
    customer: dict[str, Any] | None,
    now: float,
) -> str:
    """The whole page."""
    telemetry = alert.get("telemetryData") or {}
    zone = (customer or {}).get("timezone", "")
    local = local_time(zone, now) if zone else ""
    history = (record or {}).get("history", [])
    rows = "".join(
        f"<tr><td>{_e(h.get('at'))}</td><td>{_e(h.get('state'))}</td>"
        f"<td>{_e(h.get('reason'))}</td>"
        f"<td>{_e(h.get('detail') or h.get('callId') or '')}</td></tr>"
        for h in history
    )
    siblings = "".join(
        f"<li><b>{_e(g.get('sensorId'))}</b> {_e(g.get('alertType'))}: "
        f"{_e(g.get('currentValue'))} {_e(g.get('unit'))} (threshold {_e(g.get('threshold'))}) "
        f'<span class="muted">{_e(g.get("timestamp"))}</span></li>'
        for g in grouped
    )
    outcome = (record or {}).get("outcome") or (record or {}).get("state") or "unknown"
    result = (record or {}).get("result")
    attempts = (
        "".join(
            "<tr>"
            + "".join(
                f"<td>{_e(cell)}</td>"
                for cell in (
                    a.get("n"),
                    a.get("at"),
                    a.get("contact"),
                    a.get("phone"),
                    a.get("result") or "not placed",
                    a.get("resultReason") or "",
                    a.get("wrapupCode") or "",
                )
            )
            + "</tr>"
            for a in (record or {}).get("attempts", [])
            if isinstance(a, dict)
        )
        or '<tr><td colspan="7" class="muted">No call yet.</td></tr>'
    )
    unit = _e(telemetry.get("unit"))
    rendered = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Alert {_e(alert.get("sensorId"))}</title>
<style>{STYLE}</style></head>
<body>
<h1>{_e(alert.get("alertType"))} on sensor
 <span id="sensor">{_e(alert.get("sensorId"))}</span></h1>
<p class="value" id="value">{_e(telemetry.get("currentValue"))} {_e(telemetry.get("unit"))}
 <span class="muted">(threshold {_e(telemetry.get("threshold"))} {unit})</span></p>
<dl>
 <dt>Customer</dt><dd id="customer">{_e(alert.get("customerId"))}</dd>
 <dt>Customer's local time</dt><dd id="local-time">{_e(local or "unknown")}</dd>
 <dt>Raised</dt><dd>{_e(alert.get("timestamp"))}</dd>
 <dt>Status</dt><dd id="outcome">{_e(outcome)}</dd>
 <dt>Reference</dt><dd>{_e(reference_id)}</dd>
</dl>
<h2>Recent readings</h2>
{chart(readings)}
<h2>Also in this call</h2>
<ul id="grouped">{siblings or '<li class="muted">No other alerts.</li>'}</ul>
<h2>Call attempts</h2>
<p>Result: <span id="result">{_e(result or "not followed")}</span></p>
<table id="attempts"><tr><th>#</th><th>at</th><th>contact</th><th>number</th><th>result</th>
<th>reason</th><th>wrap-up</th></tr>{attempts}</table>
<h2>Decision history</h2>
<table id="history">{rows}</table>
<p class="muted">Rendered {rendered} UTC</p>
</body></html>
"""
