"""``stresslab suggest``: a study targeting the top causes that ``stresslab study`` accepts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from stresslab.diagnosis.suggest import suggest_study
from stresslab.runs import config as config_mod
from stresslab.study.spec import load_study
from tests.cli_helpers import invoke


def _run_dir(tmp_path: Path, counts: dict[str, int], train_issues: list[int]) -> Path:
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    cfg = config_mod.to_dict(config_mod.validate({"name": "r", "seed": 3, "train": {"epochs": 4}}))
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    (run / "results" / "diagnosis.json").write_text(json.dumps({"data": {"counts": counts}}))
    issues = {"data": {"train": {"issues": [{"index": i} for i in train_issues]}}}
    (run / "results" / "label_issues.json").write_text(json.dumps(issues))
    return run


def test_suggest_writes_a_study_that_validates(tmp_path: Path) -> None:
    counts = {"label_error": 50, "ambiguous": 30, "shortcut": 0, "out_of_distribution": 5, "model_error": 15}
    run = _run_dir(tmp_path, counts, [17, 3])
    out = tmp_path / "study.yaml"
    result = invoke(["suggest", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec = load_study(out)  # what `stresslab study` reads and validates
    assert spec.compare_to == "baseline" and spec.seeds == (0, 1, 2)
    assert spec.arms["baseline"].overrides == {}
    assert spec.arms["clean_labels"].overrides == {"data.drop_train_indices": [3, 17]}
    assert spec.arms["mixup"].overrides == {"train.augment.mixup_alpha": 0.2}
    assert spec.arms["longer"].overrides == {"train.epochs": 8}
    assert set(spec.arms) == {"baseline", "clean_labels", "label_smoothing", "mixup", "longer"}
    assert spec.config("clean_labels", 1).data.drop_train_indices == [3, 17]
    assert spec.config("baseline", 2).seed == 2  # the run's own seed is not carried into the base


def test_no_clean_labels_arm_without_flagged_training_labels() -> None:
    study, reasons = suggest_study(
        {"train": {"label_smoothing": 0.1}}, {"data": {"counts": {"label_error": 9}}}
    )
    assert set(study["arms"]) == {"baseline", "label_smoothing"}
    assert study["arms"]["label_smoothing"] == {"train.label_smoothing": 0.2}
    assert any("cross_val" in r for r in reasons)


def test_a_run_without_diagnosis_is_refused(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, {}, [])
    (run / "results" / "diagnosis.json").unlink()
    result = invoke(["suggest", str(run)])
    assert result.exit_code == 2 and "diagnosis.json is missing" in result.output


def _quality_rows(flags: list[str]) -> list[dict[str, object]]:
    return [{"cause": "image_quality", "quality_flags": f} for f in flags] + [
        {"cause": "model_error", "quality_flags": "high sharpness"} for _ in range(5)
    ]


def test_image_quality_gets_the_augmentation_of_its_most_flagged_property() -> None:
    rows = _quality_rows(["low sharpness", "low sharpness; low contrast", "low brightness"])
    diagnosis = {"data": {"counts": {"image_quality": 3, "model_error": 5}, "rows": rows}}
    study, reasons = suggest_study({"train": {"epochs": 2}}, diagnosis)
    assert study["arms"]["blur_aug"] == {"train.augment.blur_prob": 0.5, "train.augment.blur_sigma": 2.0}
    assert "brightness_aug" not in study["arms"] and "noise_aug" not in study["arms"]
    assert any("image_quality" in r and "blur_aug" in r for r in reasons)


def test_a_patch_over_the_object_gets_random_erasing_unless_the_run_erases_already() -> None:
    rows = _quality_rows(["high flat_area", "high flat_area; low contrast", "high blockiness"])
    diagnosis = {"data": {"counts": {"image_quality": 3, "model_error": 5}, "rows": rows}}
    study, _ = suggest_study({"train": {"epochs": 2}}, diagnosis)
    assert study["arms"]["random_erasing"] == {"train.augment.erasing_prob": 0.5}
    study, _ = suggest_study({"train": {"augment": {"erasing_prob": 0.3}}}, diagnosis)
    assert "random_erasing" not in study["arms"]


def test_weakest_matching_corruption_adds_its_augmentation(tmp_path: Path) -> None:
    corruption = {
        "data": {
            "corruptions": ["fog", "contrast", "gaussian_noise"],
            "accuracy": [[0.1, 0.05], [0.5, 0.3], [0.6, None]],
        }
    }
    study, reasons = suggest_study({}, {"data": {"counts": {"model_error": 4}}}, None, corruption)
    # fog is weaker but no augmentation matches it: contrast (mean 0.4) is the weakest that does.
    assert study["arms"]["contrast_aug"] == {"train.augment.contrast": 0.8}
    assert any("contrast" in r and "40.0%" in r for r in reasons)
    # A run that already trains with that augmentation gets no such arm.
    study, _ = suggest_study(
        {"train": {"augment": {"contrast": 0.5}}}, {"data": {"counts": {"model_error": 4}}}, None, corruption
    )
    assert "contrast_aug" not in study["arms"]
    # Without flags, image quality falls back to the weakest corruption's augmentation; the
    # file validates as `stresslab study` reads it.
    spec_path = tmp_path / "s.yaml"
    study, _ = suggest_study({}, {"data": {"counts": {"image_quality": 4}}}, None, corruption)
    spec_path.write_text(yaml.safe_dump(study))
    assert load_study(spec_path).arms["contrast_aug"].overrides == {"train.augment.contrast": 0.8}
