"""What every report shares: the one Jinja environment (autoescaped), number formatting,
flat metric keys and the summary cards."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


def fmt(value: Any) -> str:
    """Numbers for humans: ints as is, floats with 4 significant digits; None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def flat_metrics(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{"probe.metric": value}`` for every finite numeric metric, sorted by key."""
    out: dict[str, float] = {}
    for probe, rec in results.items():
        for key, value in rec.get("metrics", {}).items():
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[f"{probe}.{key}"] = value
    return dict(sorted(out.items()))


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("stresslab.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    return env


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def headline_cards(results: dict[str, dict[str, Any]], metrics: dict[str, float]) -> list[dict[str, str]]:
    """Summary cards from the headlines each probe declared (``Probe.headlines``).

    A label's ``{key}`` placeholders are filled from the probe's saved ``data["settings"]``;
    a declared metric the probe did not produce is skipped.
    """
    cards = []
    for probe, rec in results.items():
        settings = rec.get("data", {}).get("settings", {})
        for h in rec.get("headlines", []):
            key = f"{probe}.{h['metric']}"
            if key not in metrics:
                continue
            try:
                label = h["label"].format(**settings)
            except (KeyError, IndexError, ValueError):
                label = h["label"]
            value = f"{metrics[key]:.2%}" if h.get("percent") else fmt(metrics[key])
            cards.append({"label": label, "value": value})
    return cards


def render_template(name: str, **context: Any) -> str:
    """Render one of the package's templates (autoescaped) with ``context``."""
    return environment().get_template(name).render(**context)
