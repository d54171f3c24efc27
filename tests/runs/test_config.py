from pathlib import Path

import pytest

from stresslab.errors import ConfigError
from stresslab.runs import config as c

CONFIGS = Path(__file__).parents[2] / "configs"


def test_defaults_are_the_fashion_mnist_study() -> None:
    cfg = c.resolve()
    assert cfg.data.dataset == "fashion_mnist"
    assert cfg.model.name == "fast_cnn"
    assert list(cfg.probes)[:2] == ["evaluation", "failures"]
    # `stresslab run` with no file trains exactly what configs/fashion_mnist.yaml spells out.
    shipped = c.resolve(CONFIGS / "fashion_mnist.yaml")
    keys = {"name", "seed", "data", "model", "train"}
    assert cfg.model_dump(include=keys) == shipped.model_dump(include=keys)
    # The quick preset layers over the default study; a given file starts from the schema.
    quick = c.resolve(preset="quick")
    assert quick.model.name == "fast_cnn" and quick.train.optimizer == "sgd"
    assert c.resolve(CONFIGS / "cifar10_simple_cnn.yaml").train.weight_decay == 0.0
    old = c.resolve(CONFIGS / "fashion_mnist_custom_cnn.yaml")
    assert old.probes == shipped.probes  # the earlier recipe, examined the same way
    assert (old.model.name, old.train.optimizer, old.train.lr, old.train.batch_size, old.train.epochs) == (
        "custom_cnn",
        "adam",
        0.001,
        128,
        15,
    )


def test_preset_file_and_overrides_layer_in_order(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("train: {epochs: 7, lr: 0.01}\nprobes: {evaluation: {}, failures: {threshold: 0.8}}\n")
    cfg = c.resolve(f, preset="quick", overrides=["train.epochs=2", "probes.failures.n_uncertain=3"])
    assert cfg.train.epochs == 2 and cfg.train.lr == 0.01
    assert cfg.data.train_subset == 12000  # from the preset
    assert cfg.probes == {"evaluation": {}, "failures": {"threshold": 0.8, "n_uncertain": 3}}


def test_the_probes_named_are_the_probes_that_run(tmp_path: Path) -> None:
    quick = c.resolve(preset="quick").probes
    assert set(quick) == set(c.DEFAULT_PROBES) and quick["explain"]["n_high_confidence"] == 4
    # --set probes=..., as a list or as a mapping: exactly those probes, with those settings.
    for value in ("[evaluation, adversarial]", "{evaluation: {}, adversarial: {}}"):
        cfg = c.resolve(preset="quick", overrides=[f"probes={value}"])
        assert cfg.probes == {"evaluation": {}, "adversarial": {}}, value
        cfg = c.resolve(overrides={"probes": c.split_override(f"probes={value}")[1]})
        assert cfg.probes == {"evaluation": {}, "adversarial": {}}, value
    # A YAML file's probes, as a list or as a mapping, over a preset: exactly those probes.
    for value in ("[evaluation, adversarial]", "{evaluation: {}, adversarial: {max_images: 10}}"):
        f = tmp_path / "p.yaml"
        f.write_text(f"probes: {value}\n")
        cfg = c.resolve(f, preset="quick")
        assert list(cfg.probes) == ["evaluation", "adversarial"], value
    # A dotted setting of one probe merges into that probe and keeps every other.
    cfg = c.resolve(
        preset="quick", overrides=["probes.explain.n_correct=5", "probes.failures={threshold: 0.8}"]
    )
    assert list(cfg.probes) == list(quick)
    assert cfg.probes["explain"] == {**quick["explain"], "n_correct": 5}
    assert cfg.probes["failures"] == {"threshold": 0.8}
    assert c.resolve(f, preset="quick", overrides=["probes.evaluation.x=1"]).probes["evaluation"] == {"x": 1}
    # Overrides apply in order: a probe set, then one probe's setting on it.
    cfg = c.resolve(overrides=["probes=[evaluation, failures]", "probes.failures.threshold=0.7"])
    assert cfg.probes == {"evaluation": {}, "failures": {"threshold": 0.7}}


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.epoch: unknown key"):
        c.resolve(overrides=["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"data.val_fraction"):
        c.resolve(overrides=["data.val_fraction=1.5"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        c.resolve(bad)
    with pytest.raises(ConfigError, match="key=value"):
        c.parse_override("train.epochs")
    with pytest.raises(ConfigError, match="not found"):
        c.resolve(tmp_path / "missing.yaml")


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = c.resolve(preset="quick", overrides=["train.augment.hflip=true", "model.args={widths: [8, 16]}"])
    f = tmp_path / "r.yaml"
    f.write_text(c.dump_yaml(cfg))
    assert c.resolve(f) == cfg


def test_shipped_example_configs_validate() -> None:
    configs = sorted(CONFIGS.glob("*.yaml"))
    assert configs, "configs/ ships example studies"
    for f in configs:
        c.resolve(f)
