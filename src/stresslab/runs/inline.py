"""The report's pieces as HTML fragments for notebooks (``Run._repr_html_``, ``Run.show``).

Built from the same context and macros as ``report.html`` (:func:`report_context`,
``templates/_parts.html.j2``), autoescaped, with styles scoped to one ``div`` and no script.
"""

from __future__ import annotations

from stresslab.errors import StresslabError
from stresslab.report.render import render_template
from stresslab.runs.directory import RunDir
from stresslab.runs.report import report_context


def run_html(run: RunDir, href: str) -> str:
    """The run at a glance: status, failed probes, summary cards, warnings, the first figure
    of each probe and a link (``href``) to the full report."""
    return render_template("notebook.html.j2", href=href, report_path=str(run.report), **report_context(run))


def section_html(run: RunDir, probe: str, max_rows: int = 50) -> str:
    """One probe's section as in the report (tables cut at ``max_rows`` rows)."""
    context = report_context(run)
    found = [s for s in context["sections"] if s["name"] == probe]
    if not found:
        names = ", ".join(s["name"] for s in context["sections"]) or "none"
        raise StresslabError(f"probe: {probe!r} has no results in {run.path}; probes with results: {names}")
    return render_template(
        "notebook.html.j2", section=found[0], max_rows=max_rows, report_path=str(run.report), **context
    )
