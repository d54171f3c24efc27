"""SimCLR pretraining: it learns, resumes bit-exactly on CPU, and hands over to the trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from stresslab.errors import ConfigError
from stresslab.models import build_model
from stresslab.models.weights import load_checkpoint
from stresslab.train.config import PretrainConfig, TrainConfig
from stresslab.train.freeze import frozen_encoder
from stresslab.train.loop import train
from stresslab.train.pretrain import PRETRAIN_LAST, pretrain, pretraining
from tests.conftest import TinyNet, make_split

CPU = torch.device("cpu")


def _cfg(**kw: object) -> PretrainConfig:
    base = {"epochs": 3, "batch_size": 32, "lr": 0.01, "projection_dim": 8}
    return PretrainConfig.model_validate({**base, **kw})


def test_pretraining_learns_to_pair_views() -> None:
    split = make_split(n_train=128)
    torch.manual_seed(0)
    res = pretrain(TinyNet(split.info), split, _cfg(epochs=4), device=CPU, seed=0)
    h = res.history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    assert h[-1]["loss"] < h[0]["loss"]
    assert h[-1]["pair_acc"] > 2 / 63  # well above chance (1 of 63 candidates)
    assert h[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine to zero at the last step


def test_resume_after_a_kill_gives_the_same_weights(tmp_path: Path) -> None:
    split = make_split(n_train=96)
    torch.manual_seed(0)
    full = TinyNet(split.info)
    pretrain(full, split, _cfg(), device=CPU, seed=5, checkpoint_dir=tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_after_epoch_2(record: dict[str, float]) -> None:
        if record["epoch"] == 2:
            raise Killed

    torch.manual_seed(0)
    with pytest.raises(Killed):
        pretrain(
            TinyNet(split.info),
            split,
            _cfg(),
            device=CPU,
            seed=5,
            checkpoint_dir=tmp_path / "b",
            on_epoch=kill_after_epoch_2,
        )
    state = load_checkpoint(tmp_path / "b" / PRETRAIN_LAST)  # weights_only=True
    assert state["pretrain"]["epoch"] == 2 and not state["pretrain"]["complete"]
    torch.manual_seed(123)  # a fresh process: other initial weights, other global RNG
    resumed = TinyNet(split.info)
    pretrain(resumed, split, _cfg(), device=CPU, seed=5, checkpoint_dir=tmp_path / "b", resume=state)

    a = load_checkpoint(tmp_path / "a" / PRETRAIN_LAST)
    b = load_checkpoint(tmp_path / "b" / PRETRAIN_LAST)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    for k, v in a["pretrain"]["projection"].items():
        assert torch.equal(v, b["pretrain"]["projection"][k]), k
    strip = [
        {k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in a["pretrain"]["history"]
    ]
    assert strip == [
        {k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in b["pretrain"]["history"]
    ]
    assert a["pretrain"]["complete"]


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    split = make_split(n_train=64)
    pretrain(TinyNet(split.info), split, _cfg(epochs=1), device=CPU, seed=0, checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path / PRETRAIN_LAST)
    with pytest.raises(Exception, match="other train.pretrain settings"):
        pretrain(
            TinyNet(split.info), split, _cfg(epochs=2, temperature=0.1), device=CPU, seed=0, resume=state
        )


def _bn_model():  # type: ignore[no-untyped-def]
    split = make_split(n_train=96, n_val=32)
    torch.manual_seed(0)
    return split, build_model("custom_cnn", split.info, {"widths": [4], "fc": 8, "dropout": 0.3})


def test_linear_mode_trains_the_head_only_and_keeps_encoder_statistics() -> None:
    split, model = _bn_model()
    tcfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, pretrain=_cfg(epochs=1, then="linear"))
    with pretraining(model, split, tcfg, device=CPU, seed=0):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("head."))
        train(model, split, tcfg, device=CPU, seed=0)
        model.train()
        assert all(not m.training for n, m in model.named_modules() if n.startswith("body."))
    after = model.state_dict()
    for k, v in before.items():
        same = torch.equal(v, after[k])
        assert same != k.startswith("head."), k  # encoder (incl. BN statistics) fixed, head trained
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert all(m.training for m in model.modules())  # the freeze is undone


def test_dropout_is_off_while_pretraining_and_restored_after() -> None:
    split, model = _bn_model()
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    seen: list[bool] = []
    for m in drops:
        m.register_forward_hook(lambda mod, inp, out: seen.append(mod.training))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_seen: list[bool] = []
    bns[0].register_forward_hook(lambda mod, inp, out: bn_seen.append(mod.training))
    model.train()
    pretrain(model, split, _cfg(epochs=1), device=CPU, seed=0)
    assert drops and seen and not any(seen)
    assert any(bn_seen)  # BatchNorm trains as usual
    model.train()
    assert all(m.training for m in drops)


def test_finetune_mode_trains_the_whole_model() -> None:
    split, model = _bn_model()
    tcfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, pretrain=_cfg(epochs=1, then="finetune"))
    with pretraining(model, split, tcfg, device=CPU, seed=0) as res:
        assert res is not None and len(res.history) == 1
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train(model, split, tcfg, device=CPU, seed=0)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("body.") for k in changed) and any(k.startswith("head.") for k in changed)


def test_frozen_encoder_needs_a_head_and_pretraining_needs_features() -> None:
    with pytest.raises(ConfigError, match="head"), frozen_encoder(nn.Sequential(nn.Linear(2, 2))):
        pass
    split = make_split()
    with pytest.raises(ConfigError, match="features"):
        pretrain(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), split, _cfg(), device=CPU, seed=0)


def test_pretrain_needs_supervised_epochs() -> None:
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0, pretrain=_cfg())


@pytest.mark.slow
def test_runner_pretrains_then_probes(tmp_path: Path, fmnist_root: str) -> None:
    from typer.testing import CliRunner

    from stresslab.cli import app

    out = tmp_path / "simclr"
    args = ["run", "--quiet", "--out", str(out), "--data-root", fmnist_root]
    sets = [
        "data.train_subset=300",
        "data.test_subset=100",
        "train.epochs=1",
        "model.args={widths: [4, 8], fc: 16}",
        "train.pretrain={epochs: 2, batch_size: 64, then: linear}",
        "probes={evaluation: {}, representation: {max_train: 200, map_points: 40, n_examples: 1}}",
    ]
    res = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (out / "DONE").is_file()
    history = json.loads((out / "pretrain_history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert load_checkpoint(out / "checkpoints" / PRETRAIN_LAST)["pretrain"]["complete"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "representation.knn_accuracy" in metrics and "evaluation.accuracy" in metrics


def test_a_model_without_features_does_not_fail_the_run(tmp_path: Path, fmnist_root: str) -> None:
    from typer.testing import CliRunner

    from stresslab.cli import app

    src = tmp_path / "pooled.py"
    src.write_text(
        "from torch import nn\n"
        "class Pooled(nn.Module):\n"
        "    def __init__(self, num_classes=10, in_channels=1):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)\n"
        "    def forward(self, x):\n"
        "        return self.conv(x).mean(dim=(2, 3))\n"
    )
    out = tmp_path / "run"
    sets = [
        f"model.source={src}:Pooled",
        "data.train_subset=120",
        "data.test_subset=40",
        "train.epochs=1",
        "probes=[evaluation, representation]",
    ]
    args = ["run", "--quiet", "--out", str(out), "--data-root", fmnist_root]
    res = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (out / "DONE").is_file()
    rec = json.loads((out / "results" / "representation.json").read_text())
    assert any("no features()" in w for w in rec["warnings"]) and rec["metrics"] == {}


def test_simclr_configs_match_the_study_arms() -> None:
    import yaml

    from stresslab.runs.config import resolve

    root = Path(__file__).resolve().parents[2]
    spec = yaml.safe_load((root / "studies" / "simclr_fashion_mnist.yaml").read_text())
    base = (root / "studies" / spec["base"]).resolve()
    assert spec["compare_to"] in spec["arms"] and spec["arms"]["supervised"] == {}
    for arm, then in (("simclr_linear", "linear"), ("simclr_finetune", "finetune")):
        overrides = [f"{k}={json.dumps(v)}" for k, v in spec["arms"][arm].items()]
        from_study = resolve(base, overrides=overrides)
        plain = resolve(root / "configs" / f"fashion_mnist_simclr_{then}.yaml")
        assert from_study.train == plain.train and plain.train.pretrain is not None
        assert plain.train.pretrain.then == then
        assert from_study.model == plain.model and from_study.data == plain.data


@pytest.mark.slow
def test_a_run_killed_during_pretraining_resumes_to_the_same_weights(
    tmp_path: Path, fmnist_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stresslab.train.pretrain as pretrain_mod
    from stresslab.runs.config import resolve
    from stresslab.runs.execute import execute

    sets = [
        f"data.root={fmnist_root}",
        "data.train_subset=200",
        "data.test_subset=50",
        "train.epochs=1",
        "model.args={widths: [4], fc: 8}",
        "train.pretrain={epochs: 2, batch_size: 64, then: finetune}",
        "probes=[evaluation]",
    ]
    cfg = resolve(None, overrides=sets)
    execute(cfg, out=tmp_path / "whole", show_progress=False)

    class Killed(Exception):
        pass

    real = pretrain_mod.pretrain

    def killed_after_epoch_1(*args, **kwargs):  # type: ignore[no-untyped-def]
        def kill(record: dict[str, float]) -> None:
            if record["epoch"] == 1:
                raise Killed

        return real(*args, **kwargs, on_epoch=kill)

    monkeypatch.setattr(pretrain_mod, "pretrain", killed_after_epoch_1)
    with pytest.raises(Killed):
        execute(cfg, out=tmp_path / "killed", show_progress=False)
    monkeypatch.setattr(pretrain_mod, "pretrain", real)
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / PRETRAIN_LAST)["pretrain"]["epoch"] == 1
    execute(cfg, resume=tmp_path / "killed", show_progress=False)

    for name in (PRETRAIN_LAST, "last.pt"):
        a = load_checkpoint(tmp_path / "whole" / "checkpoints" / name)["state_dict"]
        b = load_checkpoint(tmp_path / "killed" / "checkpoints" / name)["state_dict"]
        assert all(torch.equal(v, b[k]) for k, v in a.items()), name
    assert (tmp_path / "killed" / "DONE").is_file()
