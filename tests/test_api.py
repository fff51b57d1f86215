"""The Python API (``speech_gru.cli.api``): ``Spotter.load`` of every model kind, ``classify``
of arrays and files, ``events`` from an array, a file and the microphone at the model's
operating point, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import speech_gru
from speech_gru import AudioError, MicrophoneError, ModelLoadError, Prediction, Spotter
from speech_gru.analysis.calibrate import save_point
from speech_gru.core.audio import SAMPLE_RATE, load_audio, write_wav
from speech_gru.runtime.checkpoint import OperatingPoint
from speech_gru.runtime.classifier import Classifier
from speech_gru.runtime.detector import DetectorConfig, StreamingDetector
from speech_gru.runtime.export import export
from speech_gru.runtime.source import array_chunks
from tests.helpers import (
    TINY_LABELS,
    assert_one_line_error,
    confident_checkpoint,
    fake_sounddevice,
    tiny_checkpoint,
    tone,
    tone_burst,
)

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"checkpoint": "model.ckpt", "torchscript": "model.pt", "onnx": "model.onnx"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An untrained tiny checkpoint and its TorchScript and ONNX exports, by kind."""
    root = tmp_path_factory.mktemp("api")
    checkpoint = tiny_checkpoint(root / KINDS["checkpoint"])
    export(checkpoint, root / KINDS["torchscript"], "torchscript")
    export(checkpoint, root / KINDS["onnx"], "onnx")
    return {kind: root / name for kind, name in KINDS.items()}


def point(**settings: float) -> OperatingPoint:
    values = {"threshold": 0.7, "average_s": 0.0, "refractory_s": 1.5, "hop_s": 0.1}
    return OperatingPoint(**{**values, **settings}, target_fa_per_hour=1.0)


def loud_is_yes(point: OperatingPoint | None = None, level: float = 0.8) -> Spotter:
    """A stand-in model over TINY_LABELS: "yes" at probability ``level`` where the window
    is loud, else ``_silence_``; the outcome of every stream is known."""

    def backend(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        loud = np.sqrt(np.mean(batch.astype(np.float64) ** 2, axis=1)) > 0.25  # half a burst
        probs = np.zeros((len(batch), len(TINY_LABELS)), dtype=np.float32)
        probs[loud, 2], probs[loud, 0] = level, 1 - level
        probs[~loud, 0] = 1.0
        return probs

    return Spotter(Classifier(backend, TINY_LABELS, Path("stand-in"), "checkpoint",
                              operating_point=point))  # fmt: skip


def bursts() -> np.ndarray:
    """6 s: 0.8 s tone bursts at 1 s and 4 s over quiet noise."""
    return tone_burst(6.0, 1.0, 0.8) + tone_burst(6.0, 4.0, 0.8, noise=0.0)


# -- the package ----------------------------------------------------------------------------


@pytest.mark.slow
def test_import_speech_gru_loads_neither_torch_nor_lightning() -> None:
    code = (
        "import sys, speech_gru\n"
        "assert 'torch' not in sys.modules, 'import speech_gru loaded torch'\n"
        "from speech_gru import *\n"
        "assert 'torch' in sys.modules and Spotter and Prediction and AudioError\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'lightning_fabric')]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_package_exports_its_api_and_refuses_unknown_names() -> None:
    assert speech_gru.__version__ and "__version__" in speech_gru.__all__
    for name in speech_gru.__all__:
        assert getattr(speech_gru, name) is not None
    assert set(speech_gru.__all__) <= set(dir(speech_gru))
    assert speech_gru.Spotter is Spotter and issubclass(MicrophoneError, AudioError)
    with pytest.raises(AttributeError, match="no attribute 'Spoter'"):
        speech_gru.Spoter  # noqa: B018


# -- load and classify ----------------------------------------------------------------------


def test_every_model_kind_gives_the_same_labels_and_scores(models: dict[str, Path]) -> None:
    wave = tone_burst(1.5, 0.3, 0.6)
    results = {}
    for kind, path in models.items():
        trust = kind == "torchscript"  # the one kind whose file carries code
        spotter = Spotter.load(str(path) if kind == "onnx" else path, trust_torchscript=trust)
        assert spotter.kind == kind and spotter.path == path and spotter.labels == TINY_LABELS
        assert spotter.operating_point is None and kind in repr(spotter)
        results[kind] = dict(spotter.classify(wave, top_k=len(TINY_LABELS)))
    for kind in ("torchscript", "onnx"):
        assert results[kind].keys() == results["checkpoint"].keys()
        for label, score in results["checkpoint"].items():
            assert results[kind][label] == pytest.approx(score, abs=1e-3), (kind, label)


def test_classify_returns_the_top_k_labels_best_first(models: dict[str, Path]) -> None:
    spotter = Spotter.load(models["checkpoint"])
    wave = tone(440.0, seconds=1.0)
    top = spotter.classify(wave)
    assert len(top) == 1 and isinstance(top[0], Prediction)
    label, score = top[0]
    assert isinstance(label, str) and isinstance(score, float) and label in TINY_LABELS
    every = spotter.classify(wave, top_k=10)  # at most every label
    assert every[0] == top[0] and sorted(p.label for p in every) == sorted(TINY_LABELS)
    scores = [p.score for p in every]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert spotter.classify(wave, top_k=2) == every[:2]
    assert spotter.classify(torch.from_numpy(wave)) == top  # a CPU tensor is an array too
    with pytest.raises(ValueError, match="top_k"):
        spotter.classify(wave, top_k=0)


def test_classify_takes_the_loudest_second_and_pads_a_short_clip(models: dict[str, Path]) -> None:
    spotter = Spotter.load(models["checkpoint"])
    n = len(TINY_LABELS)
    long = tone_burst(3.0, 1.5, 1.0, freq=700.0)  # the word fills 1.5-2.5 s
    word = long[24000:40000]
    assert spotter.classify(long, n) == spotter.classify(word, n)
    short = tone(700.0, seconds=0.5)
    padded = np.concatenate([short, np.zeros(8000, np.float32)])
    assert spotter.classify(short, n) == spotter.classify(padded, n)


def test_classify_reads_any_file_as_mono_16_khz(models: dict[str, Path], tmp_path: Path) -> None:
    spotter = Spotter.load(models["onnx"])
    rate = 44100
    wave = tone_burst(1.0, 0.2, 0.6, freq=500.0)
    t = np.arange(rate) / rate
    word = ((t >= 0.2) & (t < 0.8)) * 0.5 * np.sin(2 * np.pi * 500.0 * t)
    stereo = tmp_path / "stereo.flac"
    sf.write(stereo, np.stack([word, word], axis=1), rate)  # 44.1 kHz, two channels
    from_file = dict(spotter.classify(stereo, top_k=4))
    assert spotter.classify(str(stereo), 4) == spotter.classify(load_audio(stereo), 4)
    for label, score in spotter.classify(wave, top_k=4):  # the same word, generated at 16 kHz
        assert from_file[label] == pytest.approx(score, abs=0.02)
    mono = tmp_path / "mono.wav"
    write_wav(mono, wave)
    for label, score in spotter.classify(mono, top_k=4):  # 16-bit: within a quantum
        assert dict(spotter.classify(wave, top_k=4))[label] == pytest.approx(score, abs=1e-3)


def test_bad_inputs_are_one_line_errors(models: dict[str, Path], tmp_path: Path) -> None:
    spotter = Spotter.load(models["checkpoint"])
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio at all, just some text that is long enough to have a header")
    with pytest.raises(AudioError) as err:
        spotter.classify(bad)
    assert_one_line_error(err, bad, "")
    with pytest.raises(AudioError) as err:
        list(spotter.events(bad))
    assert_one_line_error(err, bad, "")
    with pytest.raises(ModelLoadError) as err:
        Spotter.load(tmp_path / "missing.ckpt")
    assert str(err.value) == f"{tmp_path / 'missing.ckpt'}: model file not found"
    with pytest.raises(ModelLoadError) as err:
        Spotter.load(bad)  # not a model
    assert "bad.wav" in str(err.value) and "\n" not in str(err.value)
    nan = tone(440.0)
    nan[100] = np.nan
    for wave, problem in ((nan, "NaN or infinite"), (np.zeros(0, np.float32), "no samples")):
        for call in (spotter.classify, spotter.events):
            with pytest.raises(AudioError) as err:
                call(wave)
            assert str(err.value).startswith("waveform: ") and problem in str(err.value)
    for wave, reason in ((np.zeros((2, 16000), np.float32), "1-D"),
                         (np.zeros(16000, np.int16), "divide by 32768")):  # fmt: skip
        with pytest.raises(ValueError, match=reason):
            spotter.classify(wave)
        with pytest.raises(ValueError, match=reason):
            spotter.events(wave)


def test_waveforms_too_loud_to_be_audio_are_refused(models: dict[str, Path]) -> None:
    """Finite as float64 but not as float32 (1e300), or finite samples whose power overflows
    (float32 1e30): once NaN scores; audio is in [-1, 1]."""
    spotter = Spotter.load(models["checkpoint"])
    for wave in (np.full(48000, 1e300), np.full(48000, 1e30, np.float32), tone(440.0) * 4000):
        for call in (spotter.classify, spotter.events):
            with pytest.raises(AudioError) as err:
                call(wave)
            message = str(err.value)
            assert message.startswith("waveform: ") and "\n" not in message
            assert "audio is in [-1, 1]" in message
    louder = tone(440.0) * 1800  # too loud for a model, still a waveform: scored, finite
    assert all(np.isfinite(p.score) for p in spotter.classify(louder, top_k=4))


# -- events ---------------------------------------------------------------------------------


def test_events_find_each_burst_of_an_array_and_of_its_file(tmp_path: Path) -> None:
    spotter = loud_is_yes()
    wave = bursts()
    events = list(spotter.events(wave))
    assert [e.label for e in events] == ["yes", "yes"]
    for event, burst_s in zip(events, (1.0, 4.0), strict=True):  # found in the burst's second
        assert burst_s < event.time_s < burst_s + 1.5
        assert event.end_s - event.start_s == pytest.approx(1.0)  # the window that scored best
        assert event.start_s < burst_s + 0.8 and event.end_s > burst_s
    assert all(e.score == pytest.approx(0.8) for e in events)
    path = tmp_path / "talk.wav"
    write_wav(path, wave)
    assert list(spotter.events(path)) == events
    # the same detector, fed in any chunks, gives the same events
    detector = StreamingDetector(
        spotter.classifier.score_windows, TINY_LABELS, DetectorConfig(batch_windows=1)
    )
    assert detector.run(array_chunks(wave, 160)) == events
    assert list(spotter.events(wave, batch_windows=3)) == events
    first = next(spotter.events(wave))  # events come as they are found
    assert first == events[0]


def test_events_run_at_the_operating_point_unless_a_setting_is_given() -> None:
    wave = bursts()
    default = loud_is_yes()
    config = default.detector_config()
    assert config == DetectorConfig(batch_windows=32)  # not calibrated: the defaults
    assert default.detector_config(live=True).batch_windows == 1
    strict = loud_is_yes(point(threshold=0.9, average_s=0.2, refractory_s=2.0))
    config = strict.detector_config()
    assert (config.threshold, config.average_s, config.refractory_s) == (0.9, 0.2, 2.0)
    assert list(strict.events(wave)) == []  # 0.8 never reaches the calibrated 0.9
    assert len(list(strict.events(wave, threshold=0.75))) == 2
    config = strict.detector_config(threshold=0.75, hop_s=0.05)
    assert (config.threshold, config.refractory_s, config.hop_s) == (0.75, 2.0, 0.05)
    per_keyword = loud_is_yes(point(threshold=0.5, thresholds={"yes": 0.95}))
    assert list(per_keyword.events(wave)) == []  # "yes" is held to its own 0.95
    assert len(list(per_keyword.events(wave, threshold=0.75))) == 2  # a given one holds for all
    assert list(per_keyword.events(wave, threshold=0.75, thresholds={"yes": 0.85})) == []
    assert len(list(default.events(wave, refractory_s=10.0))) == 1


def test_detector_settings_are_checked() -> None:
    spotter = loud_is_yes()
    with pytest.raises(TypeError, match="unknown detector setting 'treshold'"):
        spotter.events(bursts(), treshold=0.5)
    with pytest.raises(TypeError, match="sample_rate"):
        spotter.detector_config(sample_rate=8000)  # the sources give 16 kHz
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        spotter.detector_config(threshold=1.5)
    with pytest.raises(ValueError, match="'go'"):
        list(spotter.events(bursts(), thresholds={"go": 0.5}))
    for settings, problem in (
        ({"average_s": float("inf")}, "average_s must be a finite number"),
        ({"refractory_s": float("inf")}, "refractory_s must be a finite number"),
        ({"hop_s": 1e-5}, "hop_s must be at least 0.01 s"),
        ({"batch_windows": 10**9}, "batch_windows must be from 1 to 1024"),
    ):
        for call in (spotter.detector_config, lambda **s: spotter.events(bursts(), **s)):
            with pytest.raises(ValueError) as err:
                call(**settings)
            assert type(err.value) is not OverflowError and problem in str(err.value)
            assert "\n" not in str(err.value)


def test_a_checkpoints_operating_point_drives_its_exports_too(tmp_path: Path) -> None:
    """A real model, always "yes": events every refractory time from the first window."""
    checkpoint = confident_checkpoint(tmp_path / "yes.ckpt")
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    save_point(loaded, point(threshold=0.6, refractory_s=3.0), checkpoint)
    onnx = export(checkpoint, tmp_path / "yes.onnx", "onnx")
    wave = tone_burst(6.0, 0.0, 6.0)
    for path in (checkpoint, onnx):
        spotter = Spotter.load(path)
        assert spotter.operating_point == point(threshold=0.6, refractory_s=3.0)
        assert [e.time_s for e in spotter.events(wave)] == pytest.approx([1.0, 4.0])
        found = list(spotter.events(wave, refractory_s=1.5))
        assert [e.time_s for e in found] == pytest.approx([1.0, 2.5, 4.0, 5.5])
        assert {e.label for e in found} == {"yes"} and min(e.score for e in found) > 0.999
        assert spotter.classify(wave)[0].label == "yes"


def test_events_listen_to_the_microphone_until_the_loop_stops(monkeypatch) -> None:
    wave = bursts()
    blocks = [wave[i : i + 1600, None] for i in range(0, wave.size, 1600)]
    fake = fake_sounddevice(blocks, rates=(SAMPLE_RATE,), max_channels=1)
    closed = []
    fake.InputStream.close = lambda self: closed.append(self)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    spotter = loud_is_yes()
    for source in (None, "mic"):
        for event in spotter.events(source, device="USB Mic"):
            assert event.label == "yes" and 1.0 < event.time_s < 2.5
            break  # a live stream is stopped by its user
        assert len(closed) == len(fake.opened)  # the device was closed
        assert fake.opened[-1].blocksize == 1600  # one hop a block
    assert len(fake.opened) == 2
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    with pytest.raises(MicrophoneError) as err:
        spotter.events()  # raised at once, not when iterated
    assert "pip install sounddevice" in str(err.value) and "\n" not in str(err.value)
