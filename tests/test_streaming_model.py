"""Tests for the forward (streaming) KeywordModel: config, clip logits as the maximum of
frame logits, stepping with carried state equal to one pass, training through the recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from speech_gru.analysis.card import format_card, model_card
from speech_gru.core.model import ArchitectureConfig, KeywordModel, ModelConfig, StreamState
from speech_gru.runtime.classifier import load_classifier
from speech_gru.runtime.export import export
from speech_gru.train.training import main
from tests.helpers import (
    LABELS,
    STREAM_FEATURES,
    chirps,
    fast_dev_run_args,
    forward_model,
    train_args,
)

SR = 16000
HOP = 320
FEATURES = STREAM_FEATURES  # 40 ms windows, 20 ms hops


def streamed(model: KeywordModel, wave: Tensor, chunk: int) -> tuple[Tensor, StreamState]:
    """Concatenated ``step`` outputs over ``wave`` fed in chunks of ``chunk`` samples."""
    state, outputs = model.initial_state(wave.shape[0]), []
    for start in range(0, wave.shape[1], chunk):
        logits, state = model.step(wave[:, start : start + chunk], state)
        outputs.append(logits)
    return torch.cat(outputs, dim=1), state


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "backward"}, "direction must be one of"),
        ({"direction": "forward"}, "needs feature_norm one of"),  # utterance by default
        ({"direction": "forward", "feature_norm": "utterance"}, "see the future"),
    ],
)
def test_config_rejects_a_bad_direction_or_a_norm_that_sees_the_future(
    kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as err:
        ArchitectureConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_forward_model_has_one_direction_and_a_per_frame_head() -> None:
    model = forward_model()
    names = [name for name, _ in model.named_parameters()]
    assert not any("reverse" in name for name in names)
    assert not hasattr(model, "pool") and not model.encoder.bidirectional
    assert model.head[-1].in_features == 24
    stored = {"architecture": model.config.architecture.to_dict()}  # as checkpoints keep it
    assert ModelConfig.from_hparams(stored, 5).architecture == model.config.architecture
    bidirectional = KeywordModel(ModelConfig.build(5, ArchitectureConfig(), FEATURES))
    assert bidirectional.config.direction == "bidirectional" and bidirectional.encoder.bidirectional


def test_bidirectional_models_refuse_to_step() -> None:
    model = KeywordModel(ModelConfig.build(5, ArchitectureConfig(hidden_size=8), FEATURES))
    wave = torch.zeros(1, SR)
    for call in (
        lambda: model.initial_state(1),
        lambda: model.step(wave),
        lambda: model.frame_logits(wave),
    ):
        with pytest.raises(ValueError, match="needs a forward model"):
            call()


# -- clip logits, frame logits --------------------------------------------------------------


@torch.no_grad()
def test_clip_logits_are_the_maximum_of_frame_logits_and_ignore_padding() -> None:
    model = forward_model()
    clips = [chirps(1, 1.0, seed=1)[0], chirps(1, 0.7, seed=2)[0]]
    batch = torch.zeros(2, SR)
    batch[0] = clips[0]
    batch[1, : clips[1].numel()] = clips[1]
    lengths = torch.tensor([SR, clips[1].numel()])
    logits = model(batch, lengths)
    for i, clip in enumerate(clips):
        frames = model.frame_logits(clip[None])  # (1, T, C)
        torch.testing.assert_close(logits[i], frames[0].max(0).values, atol=1e-5, rtol=0)
    result = model.classify(*model.features(batch, lengths))
    attention = result["attention"]  # one-hot on the frame the predicted class peaks at
    assert torch.equal(attention.sum(-1), torch.ones(2))
    assert set(attention.unique().tolist()) == {0.0, 1.0}
    frame = attention.argmax(-1)
    best = logits.argmax(-1)
    picked = result["frame_logits"][torch.arange(2), frame, best]
    torch.testing.assert_close(picked, logits[torch.arange(2), best])
    num_valid = model.config.features.num_frames(clips[1].numel())
    assert int(frame[1]) < num_valid
    assert result["states"].shape == (2, attention.shape[1], 24)
    assert not result["states"][1, num_valid:].any()  # zero on padded frames


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_every_forward_parameter_gets_a_gradient(cell: str) -> None:
    model = forward_model(cell).train()
    feats, frame_lengths = model.features(chirps(3, 1.0), torch.tensor([SR, 12000, 9000]))
    model.classify(feats, frame_lengths)["logits"].logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


# -- streaming with carried state ----------------------------------------------------------


@pytest.mark.parametrize("chunk", [HOP, 1, 777, SR])
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@torch.no_grad()
def test_stepping_in_any_chunk_size_equals_one_pass(cell: str, chunk: int) -> None:
    model = forward_model(cell)
    wave = chirps(2, 3.0)  # (2, 48000): 149 frames of 640 samples every 320
    whole = model.frame_logits(wave)  # (2, T, C)
    steps, state = streamed(model, wave, chunk)
    assert steps.shape == whole.shape == (2, 149, 5)
    assert float((steps - whole).abs().max()) < 1e-4
    # The samples not yet framed: from frame 149's start (149 * 320) to the end.
    assert state.samples.shape == (2, wave.shape[1] - 149 * HOP)
    assert state.h.shape == (2, 2, 24)
    assert (state.c is None) == (cell != "lstm")


@torch.no_grad()
def test_a_step_short_of_a_frame_returns_no_frames_and_keeps_the_samples() -> None:
    model = forward_model()
    wave = chirps(1, 0.1)
    logits, state = model.step(wave[:, :639])  # one sample short of the first frame
    assert logits.shape == (1, 0, 5) and state.samples.shape == (1, 639)
    assert not state.h.any()
    logits, state = model.step(wave[:, 639:640], state)
    assert logits.shape == (1, 1, 5) and state.samples.shape == (1, 640 - HOP)
    torch.testing.assert_close(logits, model.frame_logits(wave[:, :640]))
    logits, same = model.step(wave[:, :0], state)
    assert logits.shape == (1, 0, 5) and torch.equal(same.samples, state.samples)


def test_step_refuses_a_chunk_of_another_batch() -> None:
    model = forward_model()
    state = model.initial_state(2)
    with pytest.raises(ValueError, match="2 streams"):
        model.step(torch.zeros(3, HOP), state)
    with pytest.raises(ValueError, match="2 streams"):
        model.step(torch.zeros(HOP), state)


# -- training through the recipe ------------------------------------------------------------


def test_stream_gru_config_runs_a_fast_dev_run(commands_dir: Path, tmp_path: Path) -> None:
    cli = main(fast_dev_run_args("stream_gru.yaml", commands_dir, tmp_path / "run"))
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.model.config.direction == "forward"
    assert cli.model.model.config.feature_norm == "global"


@pytest.mark.slow
def test_recipe_trains_a_forward_model_that_loads_and_classifies(
    commands_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    main(
        train_args(
            commands_dir, run_dir,
            "--model.architecture.direction", "forward",
            "--model.architecture.feature_norm", "global",
            "--model.architecture.hidden_size", "16",
            "--trainer.max_epochs", "2",
        )
    )  # fmt: skip
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["hyper_parameters"]["architecture"]["direction"] == "forward"
    classifier = load_classifier(checkpoint)
    assert classifier.labels == LABELS
    probs = classifier.predict(chirps(3, 1.0).numpy())
    assert probs.shape == (3, len(LABELS))
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    for fmt, name in (("torchscript", "kws.pt"), ("onnx", "kws.onnx")):  # exports agree
        exported = load_classifier(export(checkpoint, tmp_path / name, fmt), trust_torchscript=True)
        torch.testing.assert_close(
            exported.predict(chirps(3, 1.0).numpy()), probs, atol=1e-4, rtol=0
        )
    card = model_card(checkpoint)
    assert "pooling 0" in format_card(card)  # a forward model has no attention pooling
