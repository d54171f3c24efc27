"""train.amp: which arithmetic training runs in, and YAML's reading of a bare off."""

import pytest
import torch

from stresslab.runs import config
from stresslab.train import precision
from stresslab.train.precision import cpu_has_amx_bf16, use_bf16


def test_amp_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert use_bf16("bf16", cpu) and not use_bf16("off", cpu)
    assert use_bf16("auto", cpu) == cpu_has_amx_bf16()
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: True)
    assert use_bf16("auto", cpu) and not use_bf16("off", cpu)
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: False)
    assert not use_bf16("auto", cpu)
    assert not use_bf16("auto", torch.device("meta"))


def test_amx_probe_needs_every_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not cpu_has_amx_bf16()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_has_amx_bf16() == torch.backends.mkldnn.is_available()
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not cpu_has_amx_bf16()  # a PyTorch without the probe


def test_bare_yaml_switches_read_as_words(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = config.resolve(overrides=["train.amp=off", "train.channels_last=on"])
    assert cfg.train.amp == "off" and cfg.train.channels_last == "on"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\n  channels_last: off\n")
    cfg = config.resolve(path)
    assert cfg.train.amp == "off" and cfg.train.channels_last == "off"
    with pytest.raises(config.ConfigError, match="train.amp"):
        config.resolve(overrides=["train.amp=on"])  # bf16 is named, never implied by "on"
