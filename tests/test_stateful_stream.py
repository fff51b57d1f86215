"""Streaming a forward model with carried state: the detector's windows scored from one GRU
step per frame, the same scores from streaming exports with explicit state, and the
commands that run them (``stream``, ``transcribe``, ``evaluate-stream``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_gru.runtime.classifier import ModelStepper, load_classifier
from speech_gru.runtime.detector import DetectorConfig, RecordingScorer, StreamingDetector
from speech_gru.runtime.export import export
from speech_gru.runtime.stateful import StatefulScorer
from tests.helpers import (
    SEQUENCE,
    TINY_LABELS,
    chirps,
    forward_model,
    keyword_sequence,
    tiny_checkpoint,
    write_tone,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def reference(model, wave: np.ndarray, config: DetectorConfig) -> np.ndarray:  # noqa: ANN001
    """(W, C) what each window of the detector should score: the softmax of the per-class
    maximum of the whole recording's frame logits (one pass, zero start state) over the
    frames that window completes, the last 1 s worth."""
    f = model.config.features
    with torch.no_grad():
        frames = model.frame_logits(torch.from_numpy(wave)[None])[0]  # (T, C)
    per_window = f.num_frames(config.window)
    rows = []
    for end in range(config.window, wave.size + 1, config.hop):
        last = (end - f.n_fft) // f.hop_length
        rows.append(frames[max(0, last - per_window + 1) : last + 1].amax(0).softmax(-1))
    return torch.stack(rows).numpy()


def streamed(scorer, labels, wave: np.ndarray, config: DetectorConfig, chunk: int):  # noqa: ANN001
    """(W, C) posteriors a detector recorded, fed ``wave`` in ``chunk``-sample pieces."""
    recorder = RecordingScorer(scorer)
    detector = StreamingDetector(recorder, labels, config)
    detector.run(wave[i : i + chunk] for i in range(0, wave.size, chunk))
    return recorder.posteriors, detector


@pytest.mark.parametrize(
    ("hop_s", "batch_windows", "chunk"),
    [
        (0.02, 1, 320),
        (0.02, 16, 1000),
        (0.1, 1, 1600),
        (0.1, 8, 16000),
        (0.03, 3, 777),
        (0.01, 1, 160),  # a hop shorter than a frame: every other window completes none
    ],  # fmt: skip
)
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_detector_windows_come_from_one_pass_of_carried_state(
    cell: str, hop_s: float, batch_windows: int, chunk: int
) -> None:
    model = forward_model(cell)
    wave = chirps(1, 4.0)[0].numpy()
    config = DetectorConfig(hop_s=hop_s, batch_windows=batch_windows)
    labels = ["_silence_", "_unknown_", "yes", "no", "up"]
    scorer = StatefulScorer(ModelStepper(model), config)
    posteriors, detector = streamed(scorer, labels, wave, config, chunk)
    expected = reference(model, wave, config)
    assert posteriors.shape == expected.shape == (1 + (wave.size - 16000) // config.hop, 5)
    assert float(np.abs(posteriors - expected).max()) < 1e-4
    # One GRU step per 20 ms frame of audio, whatever the hop: 199 frames in 4 s.
    assert scorer.frames_run == 1 + (wave.size - 640) // 320
    assert detector.windows_scored == len(expected)


def test_a_reset_detector_starts_the_model_from_zero_state() -> None:
    model = forward_model()
    config = DetectorConfig(hop_s=0.02, batch_windows=4)
    scorer = StatefulScorer(ModelStepper(model), config)
    labels = ["_silence_", "_unknown_", "yes", "no", "up"]
    first, detector = streamed(scorer, labels, chirps(1, 2.0)[0].numpy(), config, 5000)
    second, _ = streamed(scorer, labels, chirps(1, 2.0)[0].numpy(), config, 5000)
    np.testing.assert_array_equal(first, second)  # a new detector resets the shared scorer


def test_a_stateful_scorer_refuses_a_hop_that_skips_audio() -> None:
    with pytest.raises(ValueError, match="hears every sample: hop 1.5 s"):
        StatefulScorer(ModelStepper(forward_model()), DetectorConfig(hop_s=1.5))


# -- exports with explicit state ------------------------------------------------------------


@pytest.fixture(scope="module")
def forward_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("forward")
    return {
        cell: tiny_checkpoint(root / f"{cell}.ckpt", cell, forward=True)
        for cell in ("gru", "lstm", "rnn")
    }


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_a_streaming_export_steps_as_the_checkpoint_does(
    forward_checkpoints: dict[str, Path], tmp_path: Path, cell: str, fmt: str
) -> None:
    checkpoint = forward_checkpoints[cell]
    out = export(checkpoint, tmp_path / f"step.{fmt}", fmt, streaming=True)
    exported = load_classifier(out, trust_torchscript=True)  # an export of its own
    original = load_classifier(checkpoint)
    assert exported.labels == original.labels == TINY_LABELS
    spec = json.loads(exported.metadata["streaming"])
    assert spec == {
        "frame_hop": 320, "n_fft": 640, "window_frames": 49, "samples": [320],
        "hidden": [4 if cell == "lstm" else 2, 16], "past": [48, 4],
    }  # fmt: skip
    wave = chirps(2, 3.0).numpy()  # two streams side by side
    results = []
    for stepper in (exported.stepper, original.stepper):
        state, outputs = stepper.start(2), []
        for start in range(0, wave.shape[1], 1111):
            probs, state = stepper(wave[:, start : start + 1111], state)
            outputs.append(probs)
        results.append(np.concatenate(outputs, axis=1))
    assert results[0].shape == (2, 149, 4)
    assert float(np.abs(results[0] - results[1]).max()) < 1e-4
    clips = [wave[0, :16000], wave[1, :12000], wave[0, :500]]  # a clip shorter than a frame
    torch.testing.assert_close(exported.predict(clips), original.predict(clips), atol=1e-4, rtol=0)


def test_a_bidirectional_model_does_not_export_for_streaming(tmp_path: Path) -> None:
    from speech_gru.cli.main import main

    checkpoint = tiny_checkpoint(tmp_path / "bi.ckpt")
    out = tmp_path / "step.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--streaming"]
    result = subprocess.run(
        [sys.executable, "-m", "speech_gru.cli", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "cannot stream with state" in result.stderr
    assert str(checkpoint) in result.stderr and not out.exists()
    assert main  # the same entry point as the installed command


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("speech_gru.runtime.classifier", ["speech_gru.runtime.detector"]),
        ("speech_gru.runtime.detector", ["speech_gru.runtime.checkpoint", "torch"]),
    ],
    ids=["loading", "detector"],
)
def test_loading_and_the_detector_do_not_import_each_other(module: str, absent: list) -> None:
    """Both take ``StatefulScorer`` from ``runtime.stateful``: loading a model never imports
    the detector, and the detector knows nothing of model files (nor needs torch)."""
    code = f"import sys, {module}\nprint([n for n in {absent!r} if n in sys.modules])\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{module} imports {result.stdout.strip()}"


# -- the commands, with a trained forward model ---------------------------------------------


@pytest.fixture(scope="module")
def sequence_wav(commands_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keyword_sequence(commands_dir, tmp_path_factory.mktemp("seq") / "sequence.wav")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speech_gru.cli", *args], capture_output=True, text=True, timeout=300
    )


def model_events(checkpoint: Path, wave: np.ndarray, config: DetectorConfig) -> list[dict]:
    """The events the detector gives on the model's one-pass scores (``reference``)."""
    from speech_gru.runtime.checkpoint import load_checkpoint_model

    model, labels, _ = load_checkpoint_model(checkpoint)
    detector = StreamingDetector(lambda w: w, labels, config)  # replay only
    return [e.to_dict() for e in detector.replay(reference(model, wave, config))]


def same_events(got: list[dict], expected: list[dict]) -> None:
    assert [e["label"] for e in got] == [e["label"] for e in expected]
    for a, b in zip(got, expected, strict=True):
        assert a["time_s"] == pytest.approx(b["time_s"], abs=1e-6)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("hop", ["0.02", "0.1"])
def test_stream_carries_the_state_of_a_trained_forward_model(
    forward_checkpoint: Path, sequence_wav: Path, tmp_path: Path, hop: str
) -> None:
    """``stream`` on a file gives the events of the model's own one-pass scores, and so
    does its streaming ONNX export; the first keyword is found where it is spoken. (How
    many keywords a model finds is measured by ``evaluate-stream``, not here.)"""
    from speech_gru.core.audio import load_audio

    args = ["--input", str(sequence_wav), "--hop", hop, "--threshold", "0.4", "--json"]
    result = cli("stream", "--checkpoint", str(forward_checkpoint), *args)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    config = DetectorConfig(hop_s=float(hop), threshold=0.4)
    same_events(events, model_events(forward_checkpoint, load_audio(sequence_wav), config))
    found = [e["time_s"] for e in events if e["label"] == SEQUENCE[0]]
    assert any(1.0 <= t <= 3.0 for t in found), events  # the first word is spoken at 1-2 s
    onnx = tmp_path / "step.onnx"
    exported = cli("export", "--checkpoint", str(forward_checkpoint), "--format", "onnx",
                   "--streaming", "--out", str(onnx))  # fmt: skip
    assert exported.returncode == 0 and "onnx, streaming" in exported.stdout, exported.stderr
    again = cli("stream", "--checkpoint", str(onnx), *args)
    assert again.returncode == 0, again.stderr
    same_events([json.loads(line) for line in again.stdout.splitlines()], events)


@pytest.mark.slow
def test_transcribe_and_evaluate_stream_carry_the_state_too(
    forward_checkpoint: Path, sequence_wav: Path, tmp_path: Path
) -> None:
    from speech_gru.core.audio import load_audio

    config = DetectorConfig(hop_s=0.02, threshold=0.4)
    wave = load_audio(sequence_wav)
    expected = model_events(forward_checkpoint, wave, config)
    assert expected  # the comparison below is not between two empty lists
    clip = write_tone(tmp_path / "clip.wav", 440.0, 16000, 1.0)
    result = cli("transcribe", "--checkpoint", str(forward_checkpoint), "--hop", "0.02",
                 "--threshold", "0.4", "--json", str(sequence_wav), str(clip))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    same_events([r for r in rows if r["path"] == str(sequence_wav)], expected)
    assert [r["path"] for r in rows if "time_s" not in r] == [str(clip)]  # a clip: classified
    truth = tmp_path / "truth.csv"
    truth.write_text(
        "label,start_s,end_s\n"
        + "".join(f"{word},{1 + 2.5 * i},{2 + 2.5 * i}\n" for i, word in enumerate(SEQUENCE))
    )
    report = tmp_path / "report.json"
    result = cli("evaluate-stream", "--checkpoint", str(forward_checkpoint), "--recording",
                 str(sequence_wav), "--truth", str(truth), "--hop", "0.02", "--threshold",
                 "0.4", "--json", str(report))  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["windows_scored"] == 1 + (wave.size - 16000) // 320
    same_events(data["events"], expected)


@pytest.mark.parametrize("kind", ["checkpoint", "onnx"])
def test_many_streams_step_in_one_batch_as_each_would_alone(
    forward_checkpoints: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """What ``serve`` batches across clients: streams at different points, fed different
    amounts, get what stepping each alone gives."""
    checkpoint = forward_checkpoints["gru"]
    if kind == "onnx":
        checkpoint = export(checkpoint, tmp_path / "step.onnx", "onnx", streaming=True)
    stepper = load_classifier(checkpoint).stepper
    wave = chirps(3, 2.0).numpy()
    alone = [stepper.start(1) for _ in range(3)]
    batched = [stepper.start(1) for _ in range(3)]
    sizes = [(320, 1000, 100), (5000, 320, 7), (640, 640, 640), (0, 2000, 333)]
    done = [0, 0, 0]
    for step_sizes in sizes:
        requests = []
        for i, size in enumerate(step_sizes):
            requests.append((wave[i : i + 1, done[i] : done[i] + size], batched[i]))
        results = stepper.many(requests)
        for i, (audio, _) in enumerate(requests):
            expected, alone[i] = stepper(audio, alone[i])
            probs, batched[i] = results[i]
            assert probs.shape == expected.shape
            np.testing.assert_allclose(probs, expected, atol=1e-5)
            np.testing.assert_array_equal(np.asarray(batched[i][0]), np.asarray(alone[i][0]))
            done[i] += audio.shape[1]


def test_a_hop_that_would_skip_audio_is_a_one_line_error(
    forward_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    wav = write_tone(tmp_path / "talk.wav", 440.0, 16000, 3.0)
    for command in ("stream", "transcribe"):
        args = ["--checkpoint", str(forward_checkpoints["gru"]), "--hop", "1.5"]
        args += ["--input", str(wav)] if command == "stream" else [str(wav)]
        result = cli(command, *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "--hop 1.5: a model that carries its state hears every sample" in result.stderr


def test_calibration_streams_each_recording_from_zero_state(
    forward_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """``calibrate`` records several streams through one scorer: each starts afresh."""
    from speech_gru.analysis.negatives import file_streams
    from speech_gru.analysis.streaming.scores import record
    from speech_gru.core.audio import write_wav

    classifier = load_classifier(forward_checkpoints["gru"])
    config = DetectorConfig(hop_s=0.02)
    waves = chirps(2, 2.5).numpy()
    paths = [tmp_path / f"{i}.wav" for i in range(len(waves))]
    for path, wave in zip(paths, waves, strict=True):
        write_wav(path, wave)
    together = record(classifier.scorer(config), TINY_LABELS, file_streams(paths), config)
    for path, recording in zip(paths, together, strict=True):
        (alone,) = record(classifier.scorer(config), TINY_LABELS, file_streams([path]), config)
        assert recording.posteriors.shape == (1 + (40000 - 16000) // 320, 4)
        np.testing.assert_allclose(recording.posteriors, alone.posteriors, atol=1e-6)
