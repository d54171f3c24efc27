"""Command line: ``stresslab run | study | report | check | card | suggest | list``; thin layers
over the library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler

from stresslab.errors import StresslabError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Stress-test image classifiers.")
log = logging.getLogger("stresslab")


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(e: Exception) -> None:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Argument(help="YAML config (default: the Fashion-MNIST study)")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="quick | default")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override: key=value, repeatable")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/<name>-<time>)")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="stress-test this saved model, no training")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue an interrupted run directory")] = None,
    data_root: Annotated[Path | None, typer.Option(help="where the dataset files are")] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="skip unreadable images, counting them")
    ] = False,
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard", help="log to TensorBoard (tracking.tensorboard)")
    ] = False,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="log to MLflow (tracking.mlflow)")] = False,
    checks: Annotated[Path | None, typer.Option(help="YAML of checks, added to the config's")] = None,
    baseline: Annotated[Path | None, typer.Option(help="check against this run directory")] = None,
    backend: Annotated[
        str | None, typer.Option(help="local | ray: where per-image work runs (config key backend)")
    ] = None,
    ray_address: Annotated[str | None, typer.Option(help="HOST:6379 of a Ray cluster")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars, warnings only")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train (or load) a model, run the probes and write the report."""
    _setup_logging(verbose, quiet)
    from stresslab.api import run as run_api
    from stresslab.runs.directory import RunDir

    overrides = list(set_ or [])
    if data_root is not None:
        overrides.append(f"data.root={data_root}")
    if skip_bad:
        overrides.append("data.skip_bad=true")
    overrides += [f"{k}={v}" for k, v in (("backend", backend), ("ray_address", ray_address)) if v]
    try:
        if resume is not None and (
            config or preset or set_ or checkpoint or tensorboard or mlflow or checks or baseline
        ):
            raise StresslabError("--resume takes the run directory's own config; give no other options")
        overrides += [
            f"tracking.{name}=true" for name, on in (("tensorboard", tensorboard), ("mlflow", mlflow)) if on
        ]
        overrides += _checks_overrides(checks, baseline)
        result = run_api(
            config,
            preset=preset,
            overrides=overrides if resume is None else None,
            out=out if resume is None else None,
            checkpoint=checkpoint,
            resume=resume,
            progress=not quiet,
        )
    except StresslabError as e:
        _fail(e)
        return
    for w in result.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    m = result.metrics
    if "evaluation.accuracy" in m:
        typer.echo(f"test accuracy {m['evaluation.accuracy']:.4f}")
    typer.echo(f"report: {result.report_path}")
    typer.echo(f"metrics: {RunDir(result.path).metrics}")
    if result.failed_probes:
        typer.secho(f"failed probes: {', '.join(result.failed_probes)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    _checks_verdict(result.checks)


def _checks_overrides(checks: Path | None, baseline: Path | None) -> list[str]:
    """``--checks FILE`` and ``--baseline DIR`` as ``--set`` overrides of the ``checks:`` section."""
    import json

    from stresslab.runs.config import read_yaml

    out = [f"checks={json.dumps(read_yaml(checks))}"] if checks is not None else []
    return out + ([f"checks.baseline.run={json.dumps(str(baseline))}"] if baseline is not None else [])


def _checks_verdict(outcome: dict[str, Any] | None) -> None:
    """Print the checks' verdict; exit 1 when one failed (every file is written by then)."""
    if outcome is None:
        return
    for rec in outcome["checks"]:
        if not rec["passed"]:
            typer.secho(f"check failed: {rec['message']}", fg=typer.colors.RED, err=True)
    typer.echo(f"checks: {outcome['n_checks'] - outcome['n_failed']} of {outcome['n_checks']} passed")
    if not outcome["passed"]:
        raise typer.Exit(1)


@app.command()
def check(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory")],
    checks: Annotated[
        Path | None, typer.Option(help="YAML: metric key -> condition (default: the run's)")
    ] = None,
    baseline: Annotated[Path | None, typer.Option(help="compare with this run directory")] = None,
) -> None:
    """Evaluate release checks on a finished run: writes checks.json, checks.xml (JUnit) and
    checks.md, and rebuilds the report; exit 1 when a check fails, 2 on an error."""
    _setup_logging(False, True)
    from stresslab.runs import config as config_mod
    from stresslab.runs.checks import parse_checks, run_checks
    from stresslab.runs.directory import RunDir
    from stresslab.runs.report import render

    try:
        run_ = RunDir.open(run_dir)
        if checks is not None:
            spec = parse_checks(config_mod.read_yaml(checks), str(checks), baseline)
        else:
            own = config_mod.resolve(run_.config).checks
            spec = parse_checks(own.model_dump(mode="json"), str(run_.config), baseline)
        if spec.empty:
            raise StresslabError(f"no checks: {run_dir}'s config has none; give --checks FILE")
        outcome = run_checks(run_, spec)
        render(run_)
    except StresslabError as e:
        _fail(e)
        return
    typer.echo(f"checks: {run_.path / 'checks.md'} (JUnit: {run_.path / 'checks.xml'})")
    _checks_verdict(outcome)


@app.command()
def card(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    out: Annotated[Path | None, typer.Option(help="Markdown file (default RUN_DIR/model_card.md)")] = None,
) -> None:
    """Write a model card (Markdown) from a run directory alone."""
    _setup_logging(False, True)
    from stresslab.runs.card import write_card

    try:
        path = write_card(run_dir, out)
    except StresslabError as e:
        _fail(e)
        return
    typer.echo(f"model card: {path}")


@app.command()
def study(
    study_file: Annotated[Path | None, typer.Argument(help="study YAML (optional with --resume)")] = None,
    out: Annotated[Path | None, typer.Option(help="study directory (default runs/<name>-<time>)")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue an interrupted study directory")] = None,
    workers: Annotated[int, typer.Option(help="local runs at once, each with resources.cpus threads")] = 1,
    backend: Annotated[str, typer.Option(help="local | ray")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="join this Ray cluster (default: a local one)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings only")] = False,
    plan: Annotated[
        bool, typer.Option("--plan", help="run nothing: validate, list the runs and estimate their time")
    ] = False,
    like: Annotated[
        Path | None,
        typer.Option(help="with --plan: a finished study whose seed spread sets the detectable difference"),
    ] = None,
) -> None:
    """Run every arm x seed of a study, then compare them image by image in one report."""
    _setup_logging(False, quiet)
    from stresslab.study import run_study

    if like is not None and not plan:
        _fail(StresslabError("--like needs --plan"))
        return
    if plan:
        _plan(study_file, resume, workers, like)
        return
    try:
        outcome = run_study(
            study_file, out=out, resume=resume, workers=workers, backend=backend, ray_address=ray_address
        )
    except StresslabError as e:
        _fail(e)
        return
    for arm, rec in outcome.summary.get("arms", {}).items():
        acc = rec["metrics"]["accuracy"]
        spread = f" ± {acc['std']:.2%}" if acc["std"] is not None else ""
        typer.echo(f"{arm}: test accuracy {acc['mean']:.2%}{spread} ({acc['n']} seeds)")
    for arm, rec in outcome.summary.get("checks", {}).get("arms", {}).items():
        typer.echo(f"{arm}: checks {'passed' if rec['passed'] else 'FAILED'}")
    typer.echo(f"report: {outcome.study_dir.report}")
    for rec in outcome.failed:
        typer.secho(f"failed: {rec['arm']} seed {rec['seed']}: {rec['error']}", fg=typer.colors.RED, err=True)
    if outcome.failed:
        raise typer.Exit(1)


def _plan(study_file: Path | None, resume: Path | None, workers: int, like: Path | None) -> None:
    from stresslab.study import StudyDir, load_study
    from stresslab.study.estimate import plan_lines

    try:
        if study_file is not None:
            spec = load_study(study_file)
        elif resume is not None:
            spec = StudyDir.open(resume).spec()
        else:
            raise StresslabError("give a study file (or --resume STUDY_DIR)")
        lines = plan_lines(spec, workers, like)
    except StresslabError as e:
        _fail(e)
        return
    for line in lines:
        typer.echo(line)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run or study directory")]) -> None:
    """Rebuild a run's (or a study's) report from its directory alone."""
    _setup_logging(False, True)
    from stresslab.runs.directory import RunDir
    from stresslab.runs.report import render
    from stresslab.study import StudyDir, render_study

    try:
        if StudyDir.is_study_dir(run_dir):
            sdir = StudyDir.open(run_dir)
            render_study(sdir)
            typer.echo(f"report: {sdir.report}")
            return
        run_ = RunDir.open(run_dir)
        render(run_)
    except StresslabError as e:
        _fail(e)
        return
    typer.echo(f"report: {run_.report}")


@app.command()
def suggest(
    run_dir: Annotated[Path, typer.Argument(help="a run directory with a diagnosis")],
    out: Annotated[
        Path | None, typer.Option(help="study file (default RUN_DIR/suggested_study.yaml)")
    ] = None,
) -> None:
    """Write the study whose arms target the run's top failure causes."""
    _setup_logging(False, True)
    from stresslab.study.suggested import write_suggested_study

    try:
        path, reasons = write_suggested_study(run_dir, out)
    except StresslabError as e:
        _fail(e)
        return
    for line in reasons:
        typer.echo(line)
    typer.echo(f"study: {path} (run it with `stresslab study {path}`)")


def registries() -> dict[str, list[str]]:
    """Every registry's names, keyed by what they are (the one list behind ``stresslab list``)."""
    from stresslab.attacks import ATTACKS
    from stresslab.attributions import ATTRIBUTIONS
    from stresslab.corruptions import CORRUPTIONS
    from stresslab.data import DATASETS
    from stresslab.models import MODELS
    from stresslab.plugins import load_plugins
    from stresslab.probes import PROBES

    load_plugins()
    out = {
        "datasets": DATASETS.names(),
        "models": MODELS.names(),
        "probes": PROBES.names(),
    }
    out["attribution methods"] = ATTRIBUTIONS.names()
    out["attacks"] = ATTACKS.names()
    out["corruptions"] = CORRUPTIONS.names()
    return out


@app.command("list")
def list_() -> None:
    """Show every registry: datasets, models, probes, attribution methods, attacks, corruptions."""
    found = registries()
    width = max(len(k) for k in found) + 1
    for kind, names in found.items():
        typer.echo(f"{kind + ':':<{width}} {', '.join(names)}")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.secho(
            "interrupted; continue with `stresslab run --resume RUN_DIR` "
            "(a study: `stresslab study --resume STUDY_DIR`)",
            err=True,
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
