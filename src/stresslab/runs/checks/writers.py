"""The checks' outcome as files: ``checks.json`` (everything), ``checks.xml`` (JUnit, one
test case per condition) and ``checks.md`` (a table fit for a CI job summary)."""

from __future__ import annotations

import math
from typing import Any
from xml.etree import ElementTree as ET

from stresslab.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from stresslab.runs.directory import RunDir

JSON, JUNIT, MARKDOWN = "checks.json", "checks.xml", "checks.md"
BROKEN_SHOWN = 20


def junit_xml(outcome: dict[str, Any]) -> bytes:
    """JUnit XML: one ``<testsuite name="stresslab.checks">``, one ``<testcase>`` per check; a
    failed check holds a ``<failure>`` whose message gives the measured value."""
    failed = outcome["n_failed"]
    suites = ET.Element("testsuites", tests=str(outcome["n_checks"]), failures=str(failed), errors="0")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="stresslab.checks",
        tests=str(outcome["n_checks"]),
        failures=str(failed),
        errors="0",
        skipped="0",
    )
    for rec in outcome["checks"]:
        case = ET.SubElement(suite, "testcase", classname=f"stresslab.checks.{rec['kind']}", name=rec["name"])
        if not rec["passed"]:
            ET.SubElement(case, "failure", message=rec["message"], type="CheckFailed").text = rec["message"]
        else:
            ET.SubElement(case, "system-out").text = rec["message"]
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "not measured"
    return str(v)


def markdown(outcome: dict[str, Any]) -> str:
    """The outcome as Markdown: a verdict line, one table row per check, and the images the
    new model broke (with both predictions and confidences) when a baseline was given."""
    n, failed = outcome["n_checks"], outcome["n_failed"]
    verdict = "PASSED" if outcome["passed"] else "FAILED"
    lines = [f"## stresslab checks: {verdict} ({n - failed} of {n} passed)", ""]
    lines += ["| result | check | condition | value | detail |", "| --- | --- | --- | --- | --- |"]
    for r in outcome["checks"]:
        mark = "pass" if r["passed"] else "**FAIL**"
        cells = [
            mark,
            f"`{_cell(r['name'])}`",
            _cell(r["condition"]),
            _value(r["value"]),
            _cell(r["message"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    c = outcome.get("baseline")
    if c:
        lines += [
            "",
            f"Against `{_cell(c['baseline'])}` on {c['n_images']} test images: {c['fixed']} fixed, "
            f"{c['broken']} broken ({c['confident_broken']} with confidence >= {c['confidence']:g}), "
            f"exact McNemar p = {c['mcnemar_p']:.3g}.",
        ]
        if c["broken_cases"]:
            lines += [
                "",
                "| test index | true | baseline | conf. | now | conf. |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for b in c["broken_cases"][:BROKEN_SHOWN]:
                lines.append(
                    f"| {b['index']} | {_cell(b['true'])} | {_cell(b['baseline_pred'])} | "
                    f"{b['baseline_confidence']:.3f} | {_cell(b['pred'])} | {b['confidence']:.3f} |"
                )
            more = len(c["broken_cases"]) - BROKEN_SHOWN
            if more > 0:
                lines.append(f"\n{more} more in checks.json.")
    return "\n".join(lines) + "\n"


def write_outcome(run: RunDir, outcome: dict[str, Any]) -> None:
    """Write ``checks.json``, ``checks.xml`` and ``checks.md`` into the run directory, atomically."""
    atomic_write_json(run.path / JSON, outcome)
    atomic_write_bytes(run.path / JUNIT, junit_xml(outcome))
    atomic_write_text(run.path / MARKDOWN, markdown(outcome))
