"""The model file, owned by speech_gru.runtime.checkpoint: one reader (local files,
weights-only, one-line refusals) and the writers of test metrics and operating points."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from speech_gru.runtime.checkpoint import (
    STATE_PREFIX,
    CheckpointError,
    ModelLoadError,
    OperatingPoint,
    load_checkpoint_model,
    model_state,
    read_checkpoint,
    record_test_metrics,
    save_operating_point,
    slim_checkpoint,
    write_checkpoint,
)
from speech_gru.runtime.classifier import load_classifier
from tests.helpers import TINY_LABELS, tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Unpickling it would run code: it leaves ``marker`` behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny.ckpt")


def refusal(path: str | Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


def test_what_the_reader_refuses_is_one_line(tmp_path: Path) -> None:
    assert issubclass(CheckpointError, ModelLoadError)  # loading reports it as its own
    assert "remote checkpoints are not loaded" in refusal("https://example.com/model.ckpt")
    assert refusal(tmp_path / "missing.ckpt").endswith("checkpoint file not found")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    refusal(text)  # torch's reason, in one line
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"PK\x03\x04" + bytes(64))  # a zip archive cut short
    assert "not a PyTorch checkpoint: " in refusal(broken)
    listed = tmp_path / "list.ckpt"
    torch.save([1, 2], listed)
    assert refusal(listed).endswith("not a speech_gru checkpoint (no hyper-parameters)")


def test_a_checkpoint_carrying_code_is_refused_and_its_code_never_runs(
    checkpoint: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    state = torch.load(checkpoint, weights_only=True)
    state["payload"] = Payload(marker)
    torch.save(state, evil, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    assert "it holds objects other than tensors and plain data" in refusal(evil)
    with pytest.raises(ModelLoadError, match="it holds objects other than"):
        load_classifier(evil)
    assert not marker.exists()


def test_the_model_weights_are_those_under_the_prefix(checkpoint: Path) -> None:
    stored = read_checkpoint(checkpoint)
    model, labels, whole = load_checkpoint_model(checkpoint)
    assert labels == TINY_LABELS and whole.keys() == stored.keys()
    state = model_state(stored)
    assert state.keys() == model.state_dict().keys()
    prefixed = [key for key in stored["state_dict"] if key.startswith(STATE_PREFIX)]
    assert len(prefixed) == len(state)
    with pytest.raises(CheckpointError, match="no state_dict"):
        model_state({"hyper_parameters": {}}, "x.ckpt")


def test_test_metrics_and_the_operating_point_are_written_into_the_file(
    checkpoint: Path, tmp_path: Path
) -> None:
    path = tmp_path / "copy.ckpt"
    write_checkpoint(read_checkpoint(checkpoint), path)
    record_test_metrics(path, {"test/acc": 0.5})
    point = OperatingPoint(threshold=0.8, average_s=0.5, refractory_s=1.5, hop_s=0.1)
    link = tmp_path / "link.ckpt"
    link.symlink_to(path)
    save_operating_point(read_checkpoint(path), point, link)
    assert link.is_symlink()  # written through the link, as open() would
    classifier = load_classifier(path)
    assert classifier.metadata["test_metrics"] == {"test/acc": 0.5}
    assert classifier.operating_point == point
    assert (
        read_checkpoint(path)["state_dict"].keys()
        == read_checkpoint(checkpoint)["state_dict"].keys()
    )


def test_a_half_precision_slim_model_is_half_the_weights_and_hears_the_same(
    checkpoint: Path, tmp_path: Path
) -> None:
    full = slim_checkpoint(checkpoint, tmp_path / "full.ckpt")
    half = slim_checkpoint(checkpoint, tmp_path / "half.ckpt", half=True)
    stored = read_checkpoint(half)["state_dict"]
    matrices = {key for key, value in stored.items() if value.dim() >= 2}
    assert matrices and all(stored[key].dtype == torch.float16 for key in matrices)
    others = [v for k, v in stored.items() if k not in matrices and v.is_floating_point()]
    assert others and all(value.dtype == torch.float32 for value in others)  # stats, biases
    assert not {"optimizer_states", "loops"} & read_checkpoint(half).keys()
    matrix_bytes = sum(stored[key].numel() * 2 for key in matrices)
    assert full.stat().st_size - half.stat().st_size >= 0.9 * matrix_bytes
    wave = torch.randn(3, 16000) * 0.1
    loaded = [load_checkpoint_model(path)[0] for path in (full, half)]
    assert all(p.dtype == torch.float32 for model in loaded for p in model.parameters())
    with torch.no_grad():
        expected, got = (model(wave).softmax(-1) for model in loaded)
    assert torch.allclose(expected, got, atol=5e-3)
    assert torch.equal(expected.argmax(-1), got.argmax(-1))
