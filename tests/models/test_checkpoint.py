import pickle
from pathlib import Path

import pytest
import torch

from stresslab.errors import CheckpointError
from stresslab.models.weights import check_compatible, load_checkpoint, load_weights
from stresslab.train.checkpoint import save_checkpoint
from tests.conftest import TinyNet, make_split

MARKER = Path("/tmp/stresslab-test-pwned")


class Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (MARKER.write_text, ("pwned",))


def test_pickled_code_is_refused_and_never_run(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    f = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": Evil()}, f)
    with pytest.raises(CheckpointError, match="pickled code"):
        load_checkpoint(f)
    assert not MARKER.exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not MARKER.exists()


def test_round_trip_and_plain_state_dicts(tmp_path: Path, tiny_model: TinyNet) -> None:
    f = tmp_path / "m.pt"
    save_checkpoint(f, tiny_model, {"model": {"name": "tiny", "args": {}}, "class_names": ["a", "b", "c"]})
    ck = load_checkpoint(f)
    assert ck["class_names"] == ["a", "b", "c"]
    other = TinyNet(make_split().info)
    load_weights(other, ck["state_dict"], f)
    for a, b in zip(other.state_dict().values(), tiny_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    plain = tmp_path / "plain.pt"
    torch.save(tiny_model.state_dict(), plain)
    assert set(load_checkpoint(plain)["state_dict"]) == set(tiny_model.state_dict())


def test_truncated_file_is_a_clear_error(tmp_path: Path, tiny_model: TinyNet) -> None:
    f = tmp_path / "m.pt"
    save_checkpoint(f, tiny_model, {})
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"m\.pt"):
        load_checkpoint(f)


def test_mismatches_are_spelled_out(tmp_path: Path, tiny_model: TinyNet) -> None:
    info = make_split(classes=3, channels=1).info
    ck = {"model": {"name": "simple_cnn"}, "class_names": ["a"] * 10, "channels": 3}
    with pytest.raises(CheckpointError) as e:
        check_compatible(ck, "custom_cnn", info, "x.pt")
    msg = str(e.value)
    assert (
        "'simple_cnn'" in msg
        and "checkpoint has 10, data has 3" in msg
        and "channels: checkpoint has 3" in msg
    )
    wrong = TinyNet(make_split(classes=5).info)
    with pytest.raises(CheckpointError, match=r"head.weight: checkpoint \(5, 16\) vs model \(3, 16\)"):
        load_weights(tiny_model, wrong.state_dict(), "x.pt")


def test_non_finite_weights_are_never_written(tmp_path: Path, tiny_model: TinyNet) -> None:
    f = tmp_path / "m.pt"
    save_checkpoint(f, tiny_model, {"epoch": 1})
    before = f.read_bytes()
    with torch.no_grad():
        tiny_model.head.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="head.weight"):
        save_checkpoint(f, tiny_model, {"epoch": 2})
    assert f.read_bytes() == before
