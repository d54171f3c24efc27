"""Studies: a baseline and interventions, each over several seeds, run as ordinary runs and
compared image by image (which failures a change fixed, which it broke, beyond seed noise).

``run_study(path)`` runs one (see :mod:`stresslab.study.spec` for the file format);
``render_study(dir)`` rebuilds its report from the directory alone.
"""

from stresslab.study.plan import StudyDir
from stresslab.study.report import render_study
from stresslab.study.run import StudyOutcome, run_study
from stresslab.study.spec import StudySpec, load_study, parse_study

__all__ = ["StudyDir", "StudyOutcome", "StudySpec", "load_study", "parse_study", "render_study", "run_study"]
