"""The report in a real browser (headless Chromium, offline): no console errors, every image
loads, every navigation link reaches its section, and a long table sorts and filters.

A copy of the report gets two scripts: one at the top of ``<head>`` that records errors
(uncaught exceptions, ``console.error``, resources that fail to load), and one that runs the
checks on ``load``, after the report's own script, clicking and typing like a reader, and
writes its findings into the page; ``chromium --dump-dom`` prints the page as it ends up.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import stresslab

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (`make setup-dev` installs Debian's chromium)"
)

RECORD_ERRORS = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target && e.target !== window ? (e.target.tagName + " failed to load") : e.message;
  window.__errors.push(String(t));
}, true);
window.addEventListener("unhandledrejection", function (e) { window.__errors.push(String(e.reason)); });
var __consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
</script>"""

CHECKS = """<script>
window.addEventListener("load", function () {
  var out = {errors: window.__errors};
  var images = Array.prototype.slice.call(document.images);
  out.images = images.length;
  out.broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
    .map(function (i) { return i.alt; });
  var links = Array.prototype.slice.call(document.querySelectorAll("nav a"));
  out.links = links.map(function (a) { return a.getAttribute("href"); });
  out.dangling = out.links.filter(function (h) {
    return !document.getElementById(decodeURIComponent(h.slice(1)));
  });
  var bar = document.querySelector("#probe-failures .filterbar");
  var table = bar.nextElementSibling.querySelector("table");
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var names = heads.map(function (th) { return th.textContent; });
  function column(name) {
    var col = names.indexOf(name);
    return Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return !r.hidden; })
      .map(function (r) { return r.cells[col].textContent; });
  }
  out.before = column("confidence");
  heads[names.indexOf("confidence")].click();
  out.ascending = column("confidence");
  out.aria = heads[names.indexOf("confidence")].getAttribute("aria-sort");
  heads[names.indexOf("confidence")].click();
  out.descending = column("confidence");
  heads[names.indexOf("true")].click();
  out.by_true = column("true");
  var input = bar.querySelector("input");
  input.value = "CAT";
  input.dispatchEvent(new Event("input"));
  out.filtered_true = column("true");
  out.filtered_predicted = column("predicted");
  out.count = bar.querySelector(".count").textContent;
  input.value = "";
  input.dispatchEvent(new Event("input"));
  out.rows_after_clearing = column("true").length;
  var pre = document.createElement("pre");
  pre.id = "check-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _report(tmp_path: Path) -> tuple[Path, list[list[Any]]]:
    """A tiny probe run whose failures table is long (every error: threshold 0.01)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(90, 3, 10, 10), dtype=np.uint8)
    y = np.arange(90) % 3
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    probes = {"evaluation": {}, "failures": {"threshold": 0.01}}
    names = ["cat", "dog", "bird"]
    run = stresslab.probe(net, (x, y), class_names=names, probes=probes, out=tmp_path / "run")
    rows = run.results["failures"].tables[0].rows
    assert len(rows) > 20, "the table to sort and filter must be long"
    return run.report_path, rows


def _open(page: Path) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="check-result">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert found, f"the checks did not run; chromium said:\n{proc.stderr[-3000:]}"
    return json.loads(html.unescape(found.group(1))), proc.stderr


def test_the_report_works_in_a_browser(tmp_path: Path) -> None:
    report, rows = _report(tmp_path)
    page = tmp_path / "checked.html"
    text = report.read_text(encoding="utf-8")
    assert "<script>" in text and "http://" not in text and "https://" not in text  # inline, offline
    text = text.replace("<head>", "<head>" + RECORD_ERRORS, 1).replace("</body>", CHECKS + "</body>", 1)
    page.write_text(text, encoding="utf-8")
    out, log = _open(page)

    assert out["errors"] == []
    assert not [line for line in log.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert out["images"] >= 3 and out["broken"] == []
    links = ["#summary", "#diagnosis", "#probe-evaluation", "#probe-failures", "#model-card", "#setup"]
    assert out["links"] == links
    assert out["dangling"] == []

    def conf(values: list[str]) -> list[float]:
        return [float(v) for v in values]

    # The table shows the probe's rows; a click sorts by the exact value, a second reverses.
    assert len(out["before"]) == len(rows)
    exact = sorted(r[3] for r in rows)
    assert conf(out["ascending"]) == pytest.approx([float(f"{v:.4g}") for v in exact], abs=1e-12)
    assert out["aria"] == "ascending"
    assert out["descending"] == out["ascending"][::-1]
    assert out["by_true"] == sorted(r[1] for r in rows)
    # Filtering keeps exactly the rows that mention "cat" (case-insensitive), in either column.
    keep = [r for r in rows if "cat" in (r[1] + r[2]).lower()]
    assert sorted(out["filtered_true"]) == sorted(r[1] for r in keep)
    assert all("cat" in (t + p) for t, p in zip(out["filtered_true"], out["filtered_predicted"], strict=True))
    assert out["count"] == f"{len(keep)} of {len(rows)} rows"
    assert out["rows_after_clearing"] == len(rows)
