"""Tests for speech_gru.core.model: padding invariance, shapes, global feature norm, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from speech_gru.core.features import FeatureConfig
from speech_gru.core.model import ArchitectureConfig, KeywordModel, ModelConfig

SR = 16000
LENGTHS = [SR, 12000, 7001, 480, 300]  # includes one exactly n_fft and one shorter


def make_clips(lengths: list[int], seed: int = 0) -> list[Tensor]:
    """Chirp-plus-noise clips of the given lengths, different for each clip."""
    gen = torch.Generator().manual_seed(seed)
    clips = []
    for i, n in enumerate(lengths):
        t = torch.arange(n) / SR
        f0 = 200.0 + 150 * i
        clip = 0.4 * torch.sin(2 * math.pi * f0 * t * (1 + 2 * t)) * (1 + i) / len(lengths)
        clips.append(clip + 0.02 * torch.randn(n, generator=gen))
    return clips


def pad_batch(clips: list[Tensor], fill: str = "zeros") -> tuple[Tensor, Tensor]:
    """(B, max N) batch padded at the end, and (B,) lengths."""
    n = max(c.numel() for c in clips)
    if fill == "zeros":
        batch = torch.zeros(len(clips), n)
    else:
        batch = torch.randn(len(clips), n, generator=torch.Generator().manual_seed(99))
    for i, c in enumerate(clips):
        batch[i, : c.numel()] = c
    return batch, torch.tensor([c.numel() for c in clips])


def small_model(cell: str = "gru", norm: str = "utterance", seed: int = 0) -> KeywordModel:
    torch.manual_seed(seed)
    config = ModelConfig(
        num_classes=5, cell=cell, hidden_size=16, num_layers=2, dropout=0.1,
        attention_dim=8, feature_norm=norm,
    )  # fmt: skip
    return KeywordModel(config)


def warm_global_stats(model: KeywordModel) -> None:
    """Give global running statistics non-trivial values with one training-mode pass."""
    if model.config.feature_norm == "global":
        batch, lengths = pad_batch(make_clips([SR, SR, 9000], seed=7))
        model.train()
        with torch.no_grad():
            model.features(batch, lengths)
        assert bool(model.norm.initialized)


@pytest.mark.parametrize("norm", ["utterance", "global"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_batched_padded_equals_alone(cell: str, norm: str) -> None:
    model = small_model(cell, norm)
    warm_global_stats(model)
    model.eval()
    clips = make_clips(LENGTHS)
    batch, lengths = pad_batch(clips)
    cfg = model.config.features
    with torch.no_grad():
        feats, frame_lengths = model.features(batch, lengths)
        out = model.classify(feats, frame_lengths)
        alone = [model(c[None])[0] for c in clips]
        assert torch.equal(model(batch, lengths), out["logits"])
    assert frame_lengths.tolist() == [cfg.num_frames(n) for n in LENGTHS]
    for i, logits in enumerate(alone):
        torch.testing.assert_close(out["logits"][i], logits, atol=1e-5, rtol=0)
    attention = out["attention"]  # (B, T)
    torch.testing.assert_close(attention.sum(-1), torch.ones(len(clips)), atol=1e-6, rtol=0)
    valid = torch.arange(attention.shape[1]) < frame_lengths[:, None]
    assert (attention[~valid] == 0).all()
    assert (attention[valid] > 0).all()
    assert (feats[~valid] == 0).all()  # padded frames carry no features


def test_a_conv_stem_feeds_the_gru_its_channels_and_ignores_padding() -> None:
    torch.manual_seed(0)
    config = ModelConfig(num_classes=5, hidden_size=16, attention_dim=8, conv_stem=12)
    model = KeywordModel(config).eval()
    assert model.encoder.input_size == 12
    clips = make_clips(LENGTHS)
    batch, lengths = pad_batch(clips)
    with torch.no_grad():
        together = model(batch, lengths)
        for i, clip in enumerate(clips):
            torch.testing.assert_close(together[i], model(clip[None])[0], atol=1e-5, rtol=0)
    model.train()
    model(batch, lengths).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.stem.parameters())
    assert not any(key.startswith("stem.") for key in small_model().state_dict())


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"conv_stem": 8, "direction": "forward", "feature_norm": "global"}, "bidirectional"),
        ({"conv_stem": 8, "conv_kernel": 4}, "conv_kernel odd"),
        ({"conv_stem": -1}, "conv_stem must be >= 0"),
    ],
)
def test_a_conv_stem_a_stream_cannot_run_is_refused(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ArchitectureConfig(**kwargs)


def test_padding_content_is_ignored_for_clips_of_full_frames() -> None:
    """Whatever the padding holds, a clip at least one frame long gives the same logits."""
    model = small_model().eval()
    clips = make_clips([SR, 9000, 1234])
    with torch.no_grad():
        zeros = model(*pad_batch(clips, "zeros"))
        noise = model(*pad_batch(clips, "noise"))
    torch.testing.assert_close(noise, zeros, atol=1e-5, rtol=0)


def test_shapes_and_lengths_none() -> None:
    model = small_model().eval()
    wave = torch.randn(3, SR) * 0.1
    with torch.no_grad():
        logits = model(wave)
        same = model(wave, torch.full((3,), SR))
        feats, frame_lengths = model.features(wave)
        out = model.classify(feats, frame_lengths)
    assert logits.shape == (3, 5)
    assert feats.shape == (3, 98, 40)
    assert frame_lengths.tolist() == [98, 98, 98]
    assert out["attention"].shape == (3, 98)
    assert out["states"].shape == (3, 98, 2 * 16)
    torch.testing.assert_close(same, logits, atol=1e-5, rtol=0)


def test_cells_differ_in_their_recurrent_weights_only() -> None:
    models = [small_model(cell) for cell in ("rnn", "gru", "lstm")]
    enc = [sum(p.numel() for p in m.encoder.parameters()) for m in models]
    assert enc[0] * 3 == enc[1] and enc[0] * 4 == enc[2]  # 1 transform, 3 gates, 4 gates
    assert isinstance(models[0].encoder, torch.nn.RNN) and models[0].encoder.nonlinearity == "tanh"
    rest = {m.num_parameters() - e for m, e in zip(models, enc, strict=True)}
    assert len(rest) == 1


@pytest.mark.parametrize(
    "kwargs", [{"cell": "tanh"}, {"cell": "GRU"}, {"feature_norm": "batch"}, {"feature_norm": ""}]
)
def test_config_rejects_unknown_cell_or_norm(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        ModelConfig(num_classes=3, **kwargs)
    with pytest.raises(ValueError, match="must be one of"):
        ArchitectureConfig(**kwargs)


def test_global_norm_stats_ignore_padding_and_update_only_in_training() -> None:
    model = small_model(norm="global")
    norm = model.norm
    assert not bool(norm.initialized)
    batch, lengths = pad_batch(make_clips([SR, 8000, 3000]))
    with torch.no_grad():
        raw = model.frontend(batch)  # (B, T, F), padded frames hold silence features
    frame_lengths = FeatureConfig().num_frames(lengths)
    valid = torch.cat([raw[i, :n] for i, n in enumerate(frame_lengths.tolist())])  # (V, F)
    mean, var = valid.mean(0), valid.var(0, unbiased=False)
    # Padded (silent) frames sit far from the clips' statistics, so including them would show.
    assert (raw.flatten(0, 1).mean(0) - mean).abs().max() > 1.0

    model.eval()
    with torch.no_grad():
        model.features(batch, lengths)
    assert not bool(norm.initialized)
    assert torch.equal(norm.running_mean, torch.zeros(40))
    assert torch.equal(norm.running_var, torch.ones(40))

    model.train()
    with torch.no_grad():
        feats, _ = model.features(batch, lengths)
    assert bool(norm.initialized)
    torch.testing.assert_close(norm.running_mean, mean, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(norm.running_var, var, atol=1e-2, rtol=1e-4)
    # The training batch is normalised with the statistics just taken: zero mean, unit var.
    normed = torch.cat([feats[i, :n] for i, n in enumerate(frame_lengths.tolist())])
    torch.testing.assert_close(normed.mean(0), torch.zeros(40), atol=1e-3, rtol=0)
    torch.testing.assert_close(normed.var(0, unbiased=False), torch.ones(40), atol=1e-2, rtol=0)

    first_mean, first_var = norm.running_mean.clone(), norm.running_var.clone()
    other, other_lengths = pad_batch(make_clips([SR, SR], seed=3))
    model.eval()
    with torch.no_grad():
        model.features(other * 5, other_lengths)
    assert torch.equal(norm.running_mean, first_mean)
    assert torch.equal(norm.running_var, first_var)

    model.train()
    with torch.no_grad():
        raw2 = model.frontend(other)
        model.features(other, other_lengths)
    mean2 = raw2.flatten(0, 1).mean(0)
    expected = first_mean + norm.momentum * (mean2 - first_mean)
    torch.testing.assert_close(norm.running_mean, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    ("cell", "norm"), [("gru", "utterance"), ("lstm", "global"), ("gru", "none")]
)
def test_every_parameter_gets_a_gradient(cell: str, norm: str) -> None:
    model = small_model(cell, norm).train()
    batch, lengths = pad_batch(make_clips([SR, 11000, 6000, 2000]))
    target = torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(model(batch, lengths), target)
    loss.backward()
    dead = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not dead, dead
    assert len(list(model.parameters())) > 10
