"""Distillation (``--model.distill_from``): a student learns its teachers' probabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speech_gru.core.features import FeatureConfig
from speech_gru.core.model import ArchitectureConfig
from speech_gru.runtime.checkpoint import CheckpointError
from speech_gru.runtime.factory import load_model
from speech_gru.train.lit import KeywordSpotter
from speech_gru.train.training import main
from tests.helpers import RECIPE_CONF, TINY_LABELS, chirps, tiny_checkpoint, tone_folder

TINY = ArchitectureConfig(hidden_size=16, num_layers=2, attention_dim=8)
"""tiny_checkpoint's architecture."""


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("teacher") / "teacher.ckpt")


def student(teacher: Path, architecture: ArchitectureConfig = TINY, **kwargs) -> KeywordSpotter:
    module = KeywordSpotter(
        labels=TINY_LABELS, architecture=architecture, distill_from=[str(teacher)], **kwargs
    )
    module.setup("fit")
    return module


def batch_features(module: KeywordSpotter) -> tuple[torch.Tensor, torch.Tensor]:
    return module.model.features(chirps(6, 1.0))


def test_a_student_equal_to_its_teacher_has_nothing_to_learn_and_another_learns_toward_it(
    teacher: Path,
) -> None:
    twin = student(teacher)
    twin.model.load_state_dict(twin.teachers[0].state_dict())
    twin.model.eval()
    feats, lengths = batch_features(twin)
    valid = torch.ones(len(feats))
    logits = twin.model.classify(feats, lengths)["logits"]
    assert twin.distill_loss(logits, feats, lengths, valid).item() == pytest.approx(0, abs=1e-6)

    torch.manual_seed(1)
    other = student(teacher, ArchitectureConfig(hidden_size=8, num_layers=1, attention_dim=4))
    other.model.eval()
    optimizer = torch.optim.Adam(other.model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = other.distill_loss(
            other.model.classify(feats, lengths)["logits"], feats, lengths, valid
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 1e-3
    assert losses[-1] < losses[0] / 4
    assert all(p.grad is None for t in other.teachers for p in t.parameters())


def test_teachers_average_and_padding_items_count_for_nothing(teacher: Path) -> None:
    pair = KeywordSpotter(labels=TINY_LABELS, architecture=TINY)
    pair.teachers = [pair.load_teacher(teacher), pair.load_teacher(teacher)]
    single = student(teacher)
    feats, lengths = batch_features(single)
    logits = torch.randn(len(feats), len(TINY_LABELS))
    valid = torch.ones(len(feats))
    one = single.distill_loss(logits, feats, lengths, valid)
    assert pair.distill_loss(logits, feats, lengths, valid).item() == pytest.approx(one.item())
    padded = valid.clone()
    padded[-2:] = 0
    changed = logits.clone()
    changed[-2:] += 10.0  # the padding rows' logits do not matter
    assert single.distill_loss(changed, feats, lengths, padded).item() == pytest.approx(
        single.distill_loss(logits, feats, lengths, padded).item()
    )


def test_a_teacher_that_cannot_teach_is_named_in_one_line(teacher: Path, tmp_path: Path) -> None:
    missing = tmp_path / "none.ckpt"
    with pytest.raises(CheckpointError, match="checkpoint file not found .model.distill_from."):
        student(missing)
    other_labels = KeywordSpotter(labels=["yes", "no"], distill_from=[str(teacher)])
    with pytest.raises(CheckpointError, match="cannot teach this model: its labels"):
        other_labels.setup("fit")
    with pytest.raises(CheckpointError, match="its model.features differ"):
        student(teacher, features=FeatureConfig(n_mfcc=20, n_mels=20))
    not_a_model = tmp_path / "junk.ckpt"
    not_a_model.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=str(not_a_model)) as err:
        student(not_a_model)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="distill_weight"):
        KeywordSpotter(labels=TINY_LABELS, distill_weight=1.5)


@pytest.mark.slow
def test_a_fit_with_a_teacher_trains_a_student_that_carries_nothing_of_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    words = tone_folder(tmp_path / "words", {"yes": 500.0, "no": 900.0}, speakers=20, burst=True)
    base = [
        "fit", "--config", str(RECIPE_CONF / "folder.yaml"),
        "--data.root", str(words), "--data.labels", "auto",
        "--model.architecture.num_layers", "1", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2",
    ]  # fmt: skip
    main([*base, "--run_dir", str(tmp_path / "teacher"), "--model.architecture.hidden_size", "24"])
    taught = tmp_path / "teacher" / "checkpoints" / "best.ckpt"
    args = [*base, "--run_dir", str(tmp_path / "student"), "--model.architecture.hidden_size"]
    main([*args, "16", "--model.distill_from", f"[{taught}]"])
    assert "model.distill_from: 1 teacher(s), weight 0.5 at temperature 2" in caplog.text
    best = tmp_path / "student" / "checkpoints" / "best.ckpt"
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    assert state["model.encoder.weight_hh_l0"].shape == (3 * 16, 16)
    plain = KeywordSpotter(
        labels=["yes", "no"],
        architecture=ArchitectureConfig(hidden_size=16, num_layers=1),
    )
    assert set(state) == {f"model.{key}" for key in plain.model.state_dict()}
    taught.unlink()
    loaded = load_model(best)
    assert sorted(loaded.labels) == ["no", "yes"]
    assert loaded.predict(chirps(2, 1.0)).shape == (2, 2)
