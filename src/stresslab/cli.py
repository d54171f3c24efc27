"""Command line: ``stresslab run | study | report | list``. Thin: parses, then calls the library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

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
    try:
        if resume is not None and (config or preset or set_ or checkpoint or tensorboard or mlflow):
            raise StresslabError("--resume takes the run directory's own config; give no other options")
        overrides += [
            f"tracking.{name}=true" for name, on in (("tensorboard", tensorboard), ("mlflow", mlflow)) if on
        ]
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


@app.command()
def study(
    study_file: Annotated[Path | None, typer.Argument(help="study YAML (optional with --resume)")] = None,
    out: Annotated[Path | None, typer.Option(help="study directory (default runs/<name>-<time>)")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue an interrupted study directory")] = None,
    workers: Annotated[int, typer.Option(help="local runs at once, cores split between them")] = 1,
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
