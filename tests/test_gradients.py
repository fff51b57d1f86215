"""The gradient reaching each frame (``speech_gru.analysis.gradients``, ``explain --gradients``):
equal to finite differences, none on padding, the same clip alone or in a batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_gru.analysis.gradients import feature_gradients, feature_loss, input_gradient_norms
from speech_gru.cli.main import main
from speech_gru.core.features import FeatureConfig
from speech_gru.core.model import ArchitectureConfig, KeywordModel, ModelConfig
from tests.helpers import chirps, fast_dev_run_args, tiny_checkpoint, write_tone

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(cell: str, direction: str = "bidirectional") -> KeywordModel:
    torch.manual_seed(0)
    norm = "global" if direction == "forward" else "utterance"
    architecture = ArchitectureConfig(
        cell=cell, hidden_size=6, num_layers=2, attention_dim=4, direction=direction,
        feature_norm=norm, dropout=0.0,
    )  # fmt: skip
    return KeywordModel(ModelConfig.build(3, architecture, FeatureConfig(n_mfcc=5, n_mels=8)))


@pytest.mark.parametrize("direction", ["bidirectional", "forward"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_gradient_equals_finite_differences(cell: str, direction: str) -> None:
    model = tiny(cell, direction).double().eval()
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 7, 5, generator=gen, dtype=torch.float64)
    lengths, target = torch.tensor([7, 5]), torch.tensor([2, 0])
    grad = feature_gradients(model, feats, lengths, target)
    eps = 1e-6
    for b, t, f in [(0, 0, 0), (0, 3, 2), (0, 6, 4), (1, 0, 1), (1, 4, 3)]:
        step = torch.zeros_like(feats)
        step[b, t, f] = eps
        with torch.no_grad():
            up = feature_loss(model, feats + step, lengths, target)
            down = feature_loss(model, feats - step, lengths, target)
        assert float(grad[b, t, f]) == pytest.approx(float(up - down) / (2 * eps), abs=1e-7)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_padding_gets_no_gradient_and_batching_changes_nothing(cell: str) -> None:
    model = tiny(cell).eval()
    waves = chirps(2, 1.0)
    lengths = torch.tensor([16000, 9000])
    batch = waves.clone()
    batch[1, 9000:] = 0.0
    norms, frames = input_gradient_norms(model, batch, torch.tensor([1, 2]), lengths)
    valid = int(frames[1])
    assert valid < norms.shape[1] and not norms[1, valid:].any()  # padded frames: nothing
    assert bool((norms[1, :valid] > 0).all())
    alone, _ = input_gradient_norms(model, waves[1:, :9000], torch.tensor([2]))
    torch.testing.assert_close(norms[1, :valid], alone[0], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_explain_gradients_draws_any_cell(
    cell: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = tiny_checkpoint(tmp_path / f"{cell}.ckpt", cell)
    clip = write_tone(tmp_path / "clip.wav", 440.0, 16000, 1.5)
    png, data = tmp_path / "grad.png", tmp_path / "grad.json"
    args = ["explain", "--gradients", "--checkpoint", str(checkpoint), str(clip)]
    assert main([*args, "--out", str(png), "--json", str(data)]) == 0
    assert "gradient norm per frame" in capsys.readouterr().out
    record = json.loads(data.read_text())
    assert record["cell"] == cell and len(record["gradient_norms"]) == len(record["times"]) == 98
    assert all(np.isfinite(record["gradient_norms"])) and max(record["gradient_norms"]) > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without --gradients, gates need a GRU: one line, exit 2
    assert main(["explain", "--checkpoint", str(checkpoint), str(clip), "--out", str(png)]) == 2
    assert "gate plots need a GRU encoder" in capsys.readouterr().err


def test_the_plain_rnn_trains_through_the_recipe(commands_dir: Path, tmp_path: Path) -> None:
    from speech_gru.train.training import main as train

    run = tmp_path / "run"
    cli = train(
        fast_dev_run_args("folder.yaml", commands_dir, run, "--model.architecture.cell", "rnn")
    )
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    encoder = cli.model.model.encoder
    assert isinstance(encoder, torch.nn.RNN) and encoder.bidirectional
    losses = [v for k, v in cli.trainer.callback_metrics.items() if "loss" in k]
    assert losses and all(bool(torch.isfinite(v)) for v in losses)
