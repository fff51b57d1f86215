"""Tests for speech_gru.core.features: librosa parity, chunk independence, fixed log floor.

Every signal is synthesised here (tones, noise, chirps); nothing is read from disk.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speech_gru.core.features import MFCC, FeatureConfig, log_mel, power_spectrogram
from speech_gru.core.model import KeywordModel, ModelConfig

SR = 16000


def signals() -> dict[str, np.ndarray]:
    """One-second float32 test signals at 16 kHz."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    tone_noise = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(SR)
    chirp = 0.5 * np.sin(2 * np.pi * (100 * t + (4000 - 100) / 2 * t**2))  # 100 Hz -> 4 kHz
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2  # 4 Hz syllable-like envelope
    speech_like = 0.3 * envelope * rng.standard_normal(SR)
    return {
        name: x.astype(np.float32)
        for name, x in [("tone_noise", tone_noise), ("chirp", chirp), ("am_noise", speech_like)]
    }


def librosa_mfcc(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The reference pipeline in float64: (T, n_mfcc)."""
    librosa = pytest.importorskip("librosa")
    S = librosa.feature.melspectrogram(
        y=y.astype(np.float64),
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.n_fft,
        window="hann",
        center=False,
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=False,
        norm="slaney",
    )
    log_s = librosa.power_to_db(S, ref=1.0, amin=cfg.log_floor, top_db=None)
    np.testing.assert_allclose(log_s, 10 * np.log10(np.maximum(S, cfg.log_floor)), atol=1e-9)
    return librosa.feature.mfcc(S=log_s, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho").T


@pytest.fixture(scope="module", params=["fft", "dft"])
def frontend(request: pytest.FixtureRequest) -> MFCC:
    """The training frontend (FFT), and the strided-DFT form that ONNX export uses."""
    mfcc = MFCC(FeatureConfig())
    if request.param == "dft":
        mfcc.use_dft()
    return mfcc


def test_mfcc_matches_librosa(frontend: MFCC) -> None:
    cfg = FeatureConfig()
    sigs = signals()
    batch = torch.from_numpy(np.stack(list(sigs.values())))  # (3, 16000)
    out = frontend(batch)
    assert out.dtype == torch.float32
    assert out.shape == (len(sigs), cfg.num_frames(SR), cfg.n_mfcc)
    assert cfg.num_frames(SR) == 98
    for i, (name, y) in enumerate(sigs.items()):
        ref = librosa_mfcc(y, cfg)
        assert ref.shape == (98, cfg.n_mfcc), name
        got = out[i].double().numpy()
        # Tolerance: ours is float32 end to end, librosa float64. Coefficients are dB-scale
        # (|c0| up to ~400); the worst observed difference is ~5e-4 and the relative
        # (Frobenius) error ~1.5e-6, so atol 2e-3 and 1e-5 relative leave a ~4x margin.
        np.testing.assert_allclose(got, ref, atol=2e-3, rtol=0, err_msg=name)
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5, name


def test_frames_do_not_depend_on_audio_outside_them(frontend: MFCC) -> None:
    cfg = FeatureConfig()
    rng = np.random.default_rng(1)
    t = np.arange(3 * SR) / SR
    long = (
        0.3 * np.sin(2 * np.pi * 300 * t * (1 + t)) + 0.05 * rng.standard_normal(t.size)
    ).astype(np.float32)
    full = frontend(torch.from_numpy(long)[None])[0]  # (T, F)
    for start_frame, num_samples in [(0, SR), (37, SR), (101, 12345), (150, cfg.n_fft + 5)]:
        start = start_frame * cfg.hop_length
        window = torch.from_numpy(long[start : start + num_samples])[None]
        part = frontend(window)[0]
        assert part.shape[0] == cfg.num_frames(num_samples)
        torch.testing.assert_close(
            part, full[start_frame : start_frame + part.shape[0]], atol=1e-4, rtol=0
        )  # float32 FFT rounding only (observed <= 1e-5)


def test_silence_maps_to_one_fixed_vector(frontend: MFCC) -> None:
    cfg = FeatureConfig()
    loud = torch.from_numpy(signals()["tone_noise"])
    # A loud clip whose second half is digital silence, a silent clip and a short silent one.
    half_silent = loud.clone()
    half_silent[SR // 2 :] = 0
    out = frontend(torch.stack([half_silent, torch.zeros(SR)]))
    short = frontend(torch.zeros(1, SR // 3))[0]
    # log-mel of silence is the floor in every band; the orthonormal DCT of a constant puts
    # all of it into c0.
    expected = torch.zeros(cfg.n_mfcc)
    expected[0] = 10 * np.log10(cfg.log_floor) * np.sqrt(cfg.n_mels)
    torch.testing.assert_close(out[1], expected.expand_as(out[1]), atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(short, expected.expand_as(short), atol=1e-3, rtol=1e-6)
    # Frames of the half-silent clip lying wholly in its silent part equal pure silence,
    # however loud the rest of the clip is (no level relative to the clip's maximum).
    first_silent = -(-(SR // 2) // cfg.hop_length)  # first frame starting at or after SR/2
    torch.testing.assert_close(out[0, first_silent:], out[1, first_silent:], atol=1e-4, rtol=0)
    assert not torch.allclose(out[0, :10], out[1, :10])


def test_log_mel_scales_by_exactly_20_db_per_factor_10(frontend: MFCC) -> None:
    cfg = FeatureConfig()
    x = torch.from_numpy(np.stack(list(signals().values()))) * 0.05
    logs = []
    for wave in (x, 10 * x):
        power = power_spectrogram(wave, frontend.window, cfg.n_fft, cfg.hop_length)
        logs.append(log_mel(power, frontend.fbank, cfg.log_floor))  # (B, T, n_mels)
    quiet, loud = logs
    floor_db = 10 * np.log10(cfg.log_floor)
    assert quiet.min() >= floor_db - 1e-4
    above = quiet > floor_db + 1e-3
    assert above.float().mean() > 0.5  # the check below covers most bins
    torch.testing.assert_close(loud[above], quiet[above] + 20.0, atol=1e-3, rtol=0)
    # Per-clip max is not pinned: the louder clip's max is 20 dB higher, not equal.
    torch.testing.assert_close(loud.amax((1, 2)), quiet.amax((1, 2)) + 20.0, atol=1e-3, rtol=0)


def test_input_shorter_than_n_fft_gives_one_frame(frontend: MFCC) -> None:
    cfg = FeatureConfig()
    x = torch.from_numpy(signals()["chirp"][:300])[None]
    out = frontend(x)
    assert out.shape == (1, 1, cfg.n_mfcc)
    assert torch.isfinite(out).all()
    padded = torch.nn.functional.pad(x, (0, cfg.n_fft - 300))
    torch.testing.assert_close(out, frontend(padded))


def test_num_frames_tensor_and_int_agree() -> None:
    cfg = FeatureConfig()
    sizes = [0, 1, 300, 479, 480, 481, 639, 640, 641, 8000, 15999, 16000, 16001, 48000]
    as_tensor = cfg.num_frames(torch.tensor(sizes))
    assert as_tensor.tolist() == [cfg.num_frames(n) for n in sizes]
    assert cfg.num_frames(16000) == 98
    assert cfg.num_frames(480) == 1 and cfg.num_frames(640) == 2 and cfg.num_frames(639) == 1
    frontend = MFCC(cfg)
    for n in (480, 639, 640, 8000):
        assert frontend(torch.zeros(1, n)).shape[1] == cfg.num_frames(n)


def test_features_under_bf16_autocast_stay_float32() -> None:
    torch.manual_seed(0)
    model = KeywordModel(ModelConfig(num_classes=3, hidden_size=8, num_layers=1)).eval()
    wave = torch.from_numpy(np.stack(list(signals().values())))
    lengths = torch.tensor([SR, 12000, 5000])
    plain, plain_len = model.features(wave, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, frame_len = model.features(wave, lengths)
    assert feats.dtype == torch.float32
    assert torch.equal(frame_len, plain_len)
    torch.testing.assert_close(feats, plain, atol=1e-5, rtol=1e-5)
