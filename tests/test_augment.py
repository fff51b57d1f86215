"""Tests for speech_gru.train.augment and for augmentation being off outside training."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import Tensor

from speech_gru.core.model import ArchitectureConfig
from speech_gru.train.augment import (
    NoiseBank,
    add_noise,
    cut_at_edge,
    join_words,
    mixup,
    rms,
    shift_keeping_speech,
    spec_augment,
    speech_bounds,
    speed_perturb,
    surround_word,
    time_shift,
)
from speech_gru.train.data import SpeechCommandsDataModule
from speech_gru.train.lit import KeywordSpotter
from tests.helpers import augmenting_datamodule, peak_hz, training_trainer

SR = 16000


def tones(batch: int = 4, n: int = SR) -> Tensor:
    """(batch, n) tones of different frequencies and levels."""
    t = torch.arange(n) / SR
    freqs = torch.linspace(300, 1500, batch)[:, None]
    amps = torch.linspace(0.1, 0.5, batch)[:, None]
    return amps * torch.sin(2 * math.pi * freqs * t)


def seeded(fn, seed: int):  # noqa: ANN001, ANN201
    torch.manual_seed(seed)
    return fn()


# -- seeds and shapes -------------------------------------------------------------------------


def _bank() -> NoiseBank:
    gen = torch.Generator().manual_seed(0)
    return NoiseBank([torch.randn(5000, generator=gen), torch.randn(7000, generator=gen)], 1000)


AUGMENTATIONS = {
    "speed_perturb": lambda x: speed_perturb(x, 0.85, 1.15),
    "time_shift": lambda x: time_shift(x, 1600),
    "add_noise": lambda x: add_noise(x, torch.randn_like(x) * 0.1, 0.5, 0.0, 20.0),
    "spec_augment": lambda x: spec_augment(
        x.reshape(x.shape[0], 100, 160), torch.tensor([100, 90, 80, 60]), 2, 10, 2, 20
    ).reshape(x.shape),
    "mixup": lambda x: mixup(x, torch.tensor([0, 1, 2, 3]), 4, 0.4)[0],
    "noise_bank": lambda x: _bank().sample(x.shape[0] * 4).reshape(x.shape[0], -1)[:, :4000],
}


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_shape_kept_and_seed_controls_result(name: str) -> None:
    x = tones(4, SR) + 0.01
    fn = AUGMENTATIONS[name]
    a, b, c = seeded(lambda: fn(x), 0), seeded(lambda: fn(x), 0), seeded(lambda: fn(x), 1)
    assert a.shape == b.shape == c.shape
    if name != "noise_bank":
        assert a.shape == x.shape
        assert not torch.equal(a, x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# -- waveform side ------------------------------------------------------------------------------


def test_off_settings_are_identity() -> None:
    x = tones()
    torch.manual_seed(0)
    assert torch.equal(time_shift(x, 0), x)
    assert torch.equal(speed_perturb(x, 1.0, 1.0), x)
    assert torch.equal(add_noise(x, torch.randn_like(x), 0.0, 0.0, 20.0), x)
    feats = torch.randn(3, 50, 40)
    assert torch.equal(spec_augment(feats, torch.tensor([50, 30, 10]), 0, 10, 0, 5), feats)


def test_time_shift_moves_an_impulse_intact() -> None:
    n, where, max_shift = 4000, 2000, 300
    x = torch.zeros(64, n)
    x[:, where] = 1.0
    torch.manual_seed(0)
    out = time_shift(x, max_shift)
    assert out.shape == x.shape
    assert torch.equal(out.sum(1), torch.ones(64))  # nothing lost or smeared
    assert ((out == 0) | (out == 1)).all()
    moved = out.argmax(1) - where
    assert moved.abs().max() <= max_shift
    assert len(set(moved.tolist())) > 10  # shifts really are drawn per clip
    assert (moved < 0).any() and (moved > 0).any()


def test_time_shift_zero_fills_what_comes_in() -> None:
    x = torch.ones(32, 1000)
    torch.manual_seed(1)
    out = time_shift(x, 100)
    zeros = (out == 0).sum(1)
    assert zeros.max() <= 100
    for row, k in zip(out, zeros.tolist(), strict=True):
        # Zeros form one run at the start or at the end.
        assert row[k:].eq(1).all() or row[: row.numel() - k].eq(1).all()


@pytest.mark.parametrize("rate", [1.1, 0.9])
def test_speed_perturb_scales_frequency_by_rate(rate: float) -> None:
    x = tones(3)  # 300, 900, 1500 Hz
    torch.manual_seed(0)
    out = speed_perturb(x, rate, rate)
    assert out.shape == x.shape
    for row_in, row_out in zip(x, out, strict=True):
        f_in, f_out = peak_hz(row_in), peak_hz(row_out)
        assert f_out == pytest.approx(rate * f_in, abs=2.0)
    # Stretched about the centre: the middle sample stays, and a faster clip runs out at
    # the edges, which are zero-filled.
    if rate > 1:
        edge = int(SR * (1 - 1 / rate) / 2) - 2
        assert (out[:, :edge] == 0).all() and (out[:, -edge:] == 0).all()


def test_speed_perturb_is_linear_interpolation_about_the_centre() -> None:
    n = 4000
    t = torch.arange(n, dtype=torch.float64)
    x = torch.sin(2 * torch.pi * 440 * t / SR) * torch.hann_window(n, dtype=torch.float64)
    centre = (n - 1) / 2
    for rate in (0.8, 0.93, 1.1, 1.25):
        out = speed_perturb(x.float()[None], rate, rate)[0]
        pos = (t - centre) * rate + centre
        expected = np.interp(pos.numpy(), t.numpy(), x.numpy(), left=0, right=0)
        np.testing.assert_allclose(out.numpy(), expected, atol=2e-4)


def _labelled_recordings(lengths: list[int]) -> list[Tensor]:
    """Recording k holds k * 100000 + sample index, so any sample tells where it came from."""
    return [k * 100_000 + torch.arange(n, dtype=torch.float32) for k, n in enumerate(lengths)]


def test_noise_bank_segments_are_slices_of_one_recording() -> None:
    lengths, segment = [1000, 1500, 3000], 1000
    bank = NoiseBank(_labelled_recordings(lengths), segment)
    assert len(bank) == 3
    torch.manual_seed(0)
    out = bank.sample(4000)
    assert out.shape == (4000, segment)
    rec = torch.div(out, 100_000, rounding_mode="floor").long()
    index = out - rec * 100_000
    assert (rec == rec[:, :1]).all(), "a segment straddles two recordings"
    assert (index.diff(dim=1) == 1).all(), "a segment is not contiguous"
    ends = index[:, -1]
    assert (ends < torch.tensor(lengths)[rec[:, 0]]).all()
    # Every recording is drawn, and starts reach the very end of the long recording.
    assert set(rec[:, 0].tolist()) >= {1, 2}
    long_starts = index[rec[:, 0] == 2, 0]
    assert long_starts.min() <= 10 and long_starts.max() >= 3000 - segment - 10
    # Starts are drawn per valid position: the 3000-sample recording has 2001 of them, the
    # 1500-sample one 501, so it is drawn about four times as often.
    share = (rec[:, 0] == 2).float().mean().item()
    assert share == pytest.approx(2001 / 2503, abs=0.04)


def test_noise_bank_tiles_short_recordings() -> None:
    bank = NoiseBank([torch.arange(300, dtype=torch.float32)], 1000)
    torch.manual_seed(0)
    out = bank.sample(50)
    assert out.shape == (50, 1000)
    assert ((out.diff(dim=1) - 1) % 300 == 0).all()  # contiguous in the periodic extension
    with pytest.raises(ValueError):
        NoiseBank([], 1000)


def measured_snr_db(clean: Tensor, noisy: Tensor) -> Tensor:
    return 20 * torch.log10(rms(clean) / rms(noisy - clean)).squeeze(-1)


def test_add_noise_hits_the_requested_snr() -> None:
    x = tones(8)
    noise = torch.randn(8, SR) * torch.linspace(0.01, 1.0, 8)[:, None]
    torch.manual_seed(0)
    out = add_noise(x, noise, 1.0, 10.0, 10.0)
    snr = measured_snr_db(x.double(), out.double())
    torch.testing.assert_close(snr, torch.full_like(snr, 10.0), atol=0.5, rtol=0)
    torch.manual_seed(0)
    out = add_noise(x, noise, 1.0, 0.0, 20.0)
    snr = measured_snr_db(x.double(), out.double())
    assert (snr > -0.5).all() and (snr < 20.5).all() and snr.std() > 1.0


def test_add_noise_applies_to_a_prob_share_of_clips() -> None:
    x = tones(400)
    torch.manual_seed(0)
    out = add_noise(x, torch.randn_like(x), 0.5, 10.0, 10.0)
    applied = (out != x).any(1)
    assert 0.4 < applied.float().mean().item() < 0.6
    snr = measured_snr_db(x[applied].double(), out[applied].double())
    torch.testing.assert_close(snr, torch.full_like(snr, 10.0), atol=0.5, rtol=0)
    assert torch.equal(out[~applied], x[~applied])


def test_add_noise_on_silence_uses_a_gain_up_to_the_noise_level() -> None:
    silence = torch.zeros(200, 2000)
    noise = torch.randn(200, 2000) * 0.2
    torch.manual_seed(0)
    out = add_noise(silence, noise, 1.0, 10.0, 10.0)
    gain = (rms(out) / rms(noise)).squeeze(-1)
    assert (gain >= 0).all() and (gain <= 1 + 1e-6).all()
    assert gain.min() < 0.1 and gain.max() > 0.9  # spans quiet to loud
    torch.testing.assert_close(out, noise * gain[:, None], atol=1e-6, rtol=1e-5)


# -- feature side -------------------------------------------------------------------------------


def test_spec_augment_masks_inside_valid_frames_only() -> None:
    batch, frames, bins, time_width, freq_width = 64, 100, 40, 10, 5
    lengths = torch.randint(30, frames + 1, (batch,), generator=torch.Generator().manual_seed(0))
    feats = torch.randn(batch, frames, bins).abs() + 1.0  # never zero before masking
    torch.manual_seed(0)
    out = spec_augment(feats, lengths, 1, time_width, 0, freq_width)
    zero = out == 0
    assert (out[~zero] == feats[~zero]).all()  # untouched where not masked
    masked_frames = zero.all(-1)  # (B, T): a time mask zeroes whole frames
    assert torch.equal(zero.any(-1), masked_frames)
    valid = torch.arange(frames) < lengths[:, None]
    assert not (masked_frames & ~valid).any(), "a time mask reached padded frames"
    counts = masked_frames.sum(1)
    assert counts.max() <= time_width and counts.max() > 0
    for row in masked_frames:  # one mask: one run of consecutive frames
        idx = row.nonzero().flatten()
        if idx.numel():
            assert idx[-1] - idx[0] + 1 == idx.numel()

    torch.manual_seed(1)
    out = spec_augment(feats, lengths, 0, time_width, 2, freq_width)
    zero = out == 0
    masked_bins = zero.all(1)  # (B, F): a frequency mask zeroes a coefficient in all frames
    assert torch.equal(zero.any(1), masked_bins)
    assert masked_bins.sum(1).max() <= 2 * freq_width
    assert masked_bins.any()


def test_spec_augment_several_time_masks_stay_within_their_widths() -> None:
    feats = torch.ones(128, 98, 8)
    lengths = torch.full((128,), 98)
    torch.manual_seed(0)
    out = spec_augment(feats, lengths, 3, 7, 0, 0)
    assert out.shape == feats.shape
    assert (out == 0).all(-1).sum(1).max() <= 3 * 7


def test_mixup_soft_targets_favour_the_original_clip() -> None:
    feats = torch.randn(16, 98, 40)
    targets = torch.arange(16) % 5
    for seed in range(5):
        torch.manual_seed(seed)
        mixed, soft, perm = mixup(feats, targets, 5, 0.4)
        assert mixed.shape == feats.shape and soft.shape == (16, 5)
        assert sorted(perm.tolist()) == list(range(16))
        torch.testing.assert_close(soft.sum(-1), torch.ones(16))
        lam = soft[torch.arange(16), targets]
        moved = targets != targets[perm]
        assert (lam >= 0.5 - 1e-6).all()
        lam_value = lam[moved][0]  # one lambda for the batch
        torch.testing.assert_close(lam[moved], lam_value.expand(int(moved.sum())))
        torch.testing.assert_close(soft[moved, targets[perm][moved]], 1 - lam[moved])
        expected = lam_value * feats + (1 - lam_value) * feats[perm]
        torch.testing.assert_close(mixed, expected, atol=1e-5, rtol=1e-5)


# -- off outside training ------------------------------------------------------------------------


def small_spotter(**kwargs) -> KeywordSpotter:  # noqa: ANN003
    torch.manual_seed(0)
    architecture = ArchitectureConfig(hidden_size=8, num_layers=1, dropout=0.0, attention_dim=4)
    return KeywordSpotter(architecture=architecture, **kwargs)


def head_logits(spotter: KeywordSpotter, step, seed: int) -> Tensor:  # noqa: ANN001
    """Logits the head produced while ``step()`` ran under ``seed``."""
    seen: list[Tensor] = []
    handle = spotter.model.head.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            step()
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


@pytest.mark.filterwarnings("ignore:.*self.log.*:UserWarning")
def test_spotter_augments_features_only_in_training_step() -> None:
    wave = tones(4) + 0.01 * torch.randn(4, SR, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 3])
    batch = (wave, target)

    spotter = small_spotter(time_masks=2, time_mask_width=20, freq_masks=2, mixup_alpha=0.4)
    spotter.eval()
    plain = spotter.model(wave).detach()
    for step in (
        lambda: spotter.validation_step(batch, 0),
        lambda: spotter.test_step(batch, 0),
        lambda: spotter(wave),
    ):
        a, b = head_logits(spotter, step, 0), head_logits(spotter, step, 1)
        assert torch.equal(a, b)
        torch.testing.assert_close(a, plain)
    probs = spotter(wave)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))

    spotter.train()
    train = lambda: spotter.training_step(batch, 0)  # noqa: E731
    a, b = head_logits(spotter, train, 0), head_logits(spotter, train, 1)
    assert not torch.equal(a, b)
    assert torch.equal(a, head_logits(spotter, train, 0))

    # Control: with SpecAugment and mixup off, training_step is as deterministic as eval.
    off = small_spotter(time_masks=0, freq_masks=0, mixup_alpha=0.0).train()
    train = lambda: off.training_step(batch, 0)  # noqa: E731
    a, b = head_logits(off, train, 0), head_logits(off, train, 1)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, off.model(wave).detach())


def test_datamodule_augments_waveforms_only_when_training() -> None:
    dm = augmenting_datamodule()
    wave, target = tones(4), torch.tensor([0, 1, 2, 3])
    batch = (wave, target)
    torch.manual_seed(0)
    assert dm.on_after_batch_transfer(batch, 0) is batch  # no trainer attached

    for stage in ("validating", "testing", "predicting", "sanity_checking"):
        dm.trainer = SimpleNamespace(training=False, **{stage: True})
        out_wave, out_target = dm.on_after_batch_transfer(batch, 0)
        assert torch.equal(out_wave, wave) and torch.equal(out_target, target), stage

    dm.trainer = training_trainer(0)
    torch.manual_seed(0)
    out_wave, out_target = dm.on_after_batch_transfer(batch, 0)
    assert out_wave.shape == wave.shape
    assert torch.equal(out_target, target)
    assert not torch.equal(out_wave, wave)
    assert (rms(out_wave - wave) > 0.01).all()
    # Each batch's randomness comes from (seed, batch number, rank), whatever came before.
    torch.manual_seed(123)
    again, _ = dm.on_after_batch_transfer(batch, 0)
    assert torch.equal(again, out_wave)
    for other in (training_trainer(1), training_trainer(0, rank=1)):
        dm.trainer = other
        assert not torch.equal(dm.on_after_batch_transfer(batch, 0)[0], out_wave)


# -- windows a stream shows: words anywhere, half words, two words --------------------------


def bursts(starts: list[int], length: int = 4000, n: int = SR) -> Tensor:
    """(B, N) quiet noise with a loud 500 Hz burst of ``length`` samples at each start."""
    gen = torch.Generator().manual_seed(0)
    wave = 1e-4 * torch.randn(len(starts), n, generator=gen)
    t = torch.arange(length) / SR
    for row, start in enumerate(starts):
        wave[row, start : start + length] += 0.5 * torch.sin(2 * math.pi * 500 * t)
    return wave


def loud(wave: Tensor) -> Tensor:
    """(B, N) samples belonging to a burst."""
    return wave.abs() > 0.01


def test_speech_bounds_find_the_burst() -> None:
    start, end = speech_bounds(bursts([3200, 8000]))
    assert start.tolist() == [3200, 8000]
    assert end.tolist() == [3200 + 4160, 8000 + 4160]  # whole 20 ms frames: within one
    silent = speech_bounds(torch.zeros(1, SR))
    assert silent[0].tolist() == [0] and silent[1].tolist() == [SR]


def test_shift_keeping_speech_keeps_the_whole_word_at_any_offset() -> None:
    wave = bursts([6000] * 400)
    start, end = speech_bounds(wave)
    torch.manual_seed(0)
    out = shift_keeping_speech(wave, start, end)
    onsets = loud(out).float().argmax(-1)
    assert (loud(out).sum(-1) == loud(wave).sum(-1)).all()  # nothing of the word lost
    # Offsets spread over the whole window (the old shift moved words by 0.1 s at most).
    assert onsets.min() < 600 and onsets.max() > SR - 4160 - 600


def test_cut_at_edge_keeps_part_of_the_word_at_either_edge() -> None:
    wave = bursts([6000] * 200)
    start, end = speech_bounds(wave)
    torch.manual_seed(0)
    out = cut_at_edge(wave, start, end)
    kept = loud(out).sum(-1).float() / loud(wave).sum(-1)
    assert ((kept > 0.1) & (kept < 0.7)).all()
    at_left, at_right = loud(out)[:, :40].any(-1), loud(out)[:, -40:].any(-1)
    assert (at_left ^ at_right).all()  # each cut at exactly one edge
    assert 50 < at_left.sum() < 150  # both edges drawn


def test_join_words_puts_one_words_end_before_anothers_start() -> None:
    wave = torch.cat([bursts([6000], length=4000), 2 * bursts([2000], length=8000)])
    start, end = speech_bounds(wave)
    out = join_words(wave, start, end, order=torch.tensor([1, 0]), where=(0.5, 0.5))
    half = SR // 2
    for row, (first, second) in enumerate([(0, 1), (1, 0)]):
        before, after = out[row, :half], out[row, half:]
        assert half - 400 < int(torch.nonzero(loud(before))[-1]) < half  # a word ends here
        assert int(torch.nonzero(loud(after))[0]) < 400  # and the next starts
        assert float(before.abs().max()) == pytest.approx(float(wave[first].abs().max()), 0.05)
        assert float(after.abs().max()) == pytest.approx(float(wave[second].abs().max()), 0.05)


def test_surround_word_keeps_the_word_whole_between_two_others() -> None:
    word = bursts([7000], length=2000)  # 7000-9000
    other = 2 * bursts([3000], length=6000)  # a louder word, 3000-9000
    wave = torch.cat([word, other])
    start, end = speech_bounds(wave)
    torch.manual_seed(0)
    out = surround_word(wave, start, end, torch.tensor([1, 0]), torch.tensor([1, 0]))[0]
    assert torch.equal(out[start[0] : end[0]], wave[0, start[0] : end[0]])  # kept whole
    louder = out.abs() > 0.6  # only the neighbour reaches past 0.5
    last_before = int(torch.nonzero(louder[: start[0]])[-1])
    first_after = int(end[0]) + int(torch.nonzero(louder[end[0] :])[0])
    frame = 320  # speech bounds are whole frames
    assert start[0] - 2400 - frame < last_before < start[0]  # ends within 150 ms before
    assert end[0] <= first_after < end[0] + 2400 + frame  # and another starts just after


def streaming_datamodule(**kwargs) -> SpeechCommandsDataModule:  # noqa: ANN003
    return SpeechCommandsDataModule(root="unused", download=False, noise_prob=0.0, **kwargs)


def test_half_and_joined_words_train_as_unknown() -> None:
    dm = streaming_datamodule(edge_cut_prob=0.3, join_prob=0.3, shift_anywhere=True)
    labels = dm.labels  # v2_12: _silence_, _unknown_, then the keywords
    silence, unknown, yes = labels.index("_silence_"), labels.index("_unknown_"), 2
    target = torch.tensor([yes] * 300 + [silence] * 50 + [-1] * 50)
    wave = bursts([6000] * len(target))
    torch.manual_seed(0)
    out, new = dm.streaming_views(wave, target)
    keyword = target == yes
    relabelled = keyword & (new == unknown)
    assert 0.45 < relabelled[:300].float().mean() < 0.75  # 0.3 cut + 0.3 joined
    assert torch.equal(new[300:], target[300:])  # silence and padding are left alone
    whole = keyword & (new == yes)
    assert (loud(out[whole]).sum(-1) == loud(wave[whole]).sum(-1)).all()  # kept whole


def test_keywords_heard_mid_sentence_keep_their_label_and_whole_word() -> None:
    dm = streaming_datamodule(context_prob=0.5)
    labels = dm.labels
    silence, unknown, yes = labels.index("_silence_"), labels.index("_unknown_"), 2
    target = torch.tensor([yes] * 200 + [unknown] * 100 + [silence] * 50)
    wave = torch.cat([bursts([6000] * 200, length=2000), 2 * bursts([2000] * 150, length=9000)])
    torch.manual_seed(0)
    out, new = dm.streaming_views(wave, target)
    assert torch.equal(new, target)  # labels kept
    start, end = speech_bounds(wave[:200])
    beside = (out[:200].abs() > 0.6).any(-1)  # a louder neighbour's speech came in
    assert 0.3 < beside.float().mean() < 0.7
    assert not (out[200:300].abs() > 1.1).any()  # other words are left alone
    rows = torch.nonzero(beside).flatten()
    for row in rows[:20]:
        s, e = int(start[row]), int(end[row])
        assert torch.equal(out[row, s:e], wave[row, s:e])
    with pytest.raises(ValueError, match="sum to at most 1"):
        streaming_datamodule(join_prob=0.6, context_prob=0.5)


def test_streaming_views_off_is_todays_time_shift() -> None:
    dm = streaming_datamodule(time_shift_ms=50.0)
    wave, target = bursts([6000] * 8), torch.arange(8) % 12
    out, new = seeded(lambda: dm.streaming_views(wave, target), 3)
    assert torch.equal(out, seeded(lambda: time_shift(wave, 800), 3))
    assert torch.equal(new, target)


def test_half_words_need_the_unknown_label() -> None:
    with pytest.raises(ValueError, match="_unknown_"):
        streaming_datamodule(labels=["yes", "no"], edge_cut_prob=0.2)
