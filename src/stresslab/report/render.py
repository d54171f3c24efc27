"""What every report shares: the one Jinja environment (autoescaped), number formatting,
flat metric keys and the summary cards."""

from __future__ import annotations

import base64
import math
import string
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from stresslab.errors import StresslabError


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
    a declared metric the probe did not produce is skipped. A placeholder the saved settings
    do not fill is a :class:`StresslabError` naming the probe and the placeholder (the probe
    declared a label it does not save the settings for).
    """
    cards = []
    for probe, rec in results.items():
        settings = rec.get("data", {}).get("settings", {})
        for h in rec.get("headlines", []):
            key = f"{probe}.{h['metric']}"
            if key not in metrics:
                continue
            label = _fill_label(probe, h["label"], settings)
            value = f"{metrics[key]:.2%}" if h.get("percent") else fmt(metrics[key])
            cards.append({"label": label, "value": value})
    return cards


def _fill_label(probe: str, label: str, settings: dict[str, Any]) -> str:
    """``label`` with its ``{key}`` placeholders filled from ``settings``."""
    fields = [f for _, f, _, _ in string.Formatter().parse(label) if f is not None]
    for name in fields:
        if not name or name.split(".")[0].split("[")[0] not in settings:
            held = ", ".join(sorted(settings)) or "nothing"
            raise StresslabError(
                f"probe {probe}: the headline label {label!r} has the placeholder {{{name}}}, which "
                f"the probe's saved data['settings'] does not fill (it holds: {held})"
            )
    try:
        return label.format(**settings)
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise StresslabError(f"probe {probe}: the headline label {label!r} cannot be filled: {e}") from None


def render_template(name: str, **context: Any) -> str:
    """Render one of the package's templates (autoescaped) with ``context``."""
    return environment().get_template(name).render(**context)
