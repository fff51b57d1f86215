"""`speech-gru explain` on a tiny checkpoint trained for one step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_gru.analysis.explain import explain_file
from speech_gru.cli.main import main
from speech_gru.core.audio import loudest_start, write_wav
from tests.helpers import TINY_LABELS as LABELS
from tests.helpers import tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("explain")


@pytest.fixture(scope="module")
def checkpoint(folder: Path) -> Path:
    return tiny_checkpoint(folder / "tiny.ckpt")


@pytest.fixture(scope="module")
def clips(folder: Path) -> dict[str, Path]:
    """A rising tone in the middle of silence, white noise, and a 2.5 s recording."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    tone = np.where((t > 0.3) & (t < 0.7), 0.5 * np.sin(2 * np.pi * (300 + 900 * t) * t), 0.0)
    noise = 0.3 * rng.standard_normal(16000)
    long = 0.01 * rng.standard_normal(40000)
    long[24000:32000] += 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)  # 1.5-2.0 s
    paths = {"tone": tone, "noise": noise, "long": long, "short": tone[:8000]}
    for name, wave in paths.items():
        write_wav(folder / f"{name}.wav", wave.astype(np.float32))
    return {name: folder / f"{name}.wav" for name in paths}


def read_png(path: Path) -> np.ndarray:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


def run_explain(checkpoint: Path, clip: Path, out: Path) -> dict:
    png, js = out.with_suffix(".png"), out.with_suffix(".json")
    args = ["explain", "--checkpoint", str(checkpoint), str(clip), "--out", str(png)]
    assert main([*args, "--json", str(js)]) == 0
    return json.loads(js.read_text())


def test_explain_writes_a_png_and_json_that_follow_the_input(
    checkpoint: Path, clips: dict[str, Path], folder: Path, capsys: pytest.CaptureFixture
) -> None:
    tone = run_explain(checkpoint, clips["tone"], folder / "tone")
    out = capsys.readouterr().out
    assert f"{clips['tone']}: {tone['predicted']} " in out and "note:" not in out
    noise = run_explain(checkpoint, clips["noise"], folder / "noise")

    a, b = read_png(folder / "tone.png"), read_png(folder / "noise.png")
    assert a.shape == b.shape and a.shape[0] > 400 and a.shape[1] > 600
    assert np.abs(a - b).mean() > 1e-3  # the drawing shows the input
    assert (folder / "tone.png").stat().st_size < 300_000

    frames = 1 + (16000 - 480) // 160
    for record in (tone, noise):
        assert len(record["times"]) == len(record["attention"]) == frames
        assert record["times"][0] == pytest.approx(240 / 16000)
        assert record["times"][1] - record["times"][0] == pytest.approx(0.01)
        assert sum(record["attention"]) == pytest.approx(1.0, abs=1e-4)
        assert min(record["attention"]) >= 0
        probabilities = record["probabilities"]
        assert list(probabilities) == LABELS
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert record["predicted"] == max(probabilities, key=probabilities.get)
        assert {(g["layer"], g["direction"]) for g in record["gates"]} == {
            (1, "forward"), (1, "backward"), (2, "forward"), (2, "backward")
        }  # fmt: skip
        for g in record["gates"]:
            for gate in (g["z"], g["r"]):
                assert len(gate) == frames and all(0 < v < 1 for v in gate)
    assert tone["attention"] != noise["attention"]
    assert tone["gates"][0]["z"] != noise["gates"][0]["z"]


def test_explain_matches_the_model(checkpoint: Path, clips: dict[str, Path]) -> None:
    """Probabilities and attention come from the real model's forward pass."""
    from speech_gru.core.audio import load_audio
    from speech_gru.runtime.checkpoint import load_checkpoint_model

    model, _, _ = load_checkpoint_model(checkpoint)
    wave = torch.from_numpy(load_audio(clips["tone"]))[None]
    with torch.no_grad():
        probabilities = model(wave).softmax(-1)[0].numpy()
    explanation = explain_file(checkpoint, clips["tone"])
    np.testing.assert_allclose(explanation.probabilities, probabilities, atol=1e-6)
    assert explanation.features.shape == (98, 40)


def test_a_model_with_a_conv_stem_explains_the_gates_its_gru_ran(
    folder: Path, clips: dict[str, Path]
) -> None:
    """The explicit GRU reads the stem's channels, as the model's encoder does (explain
    checks the two agree, and says so when they do not)."""
    from speech_gru.core.audio import load_audio
    from speech_gru.runtime.checkpoint import load_checkpoint_model

    stem = tiny_checkpoint(folder / "stem.ckpt", conv_stem=8)
    model, _, _ = load_checkpoint_model(stem)
    with torch.no_grad():
        wave = torch.from_numpy(load_audio(clips["tone"]))[None]
        probabilities = model(wave).softmax(-1)[0].numpy()
    explanation = explain_file(stem, clips["tone"])
    np.testing.assert_allclose(explanation.probabilities, probabilities, atol=1e-6)
    assert len(explanation.gates) == 4  # 2 layers x 2 directions


def test_long_clips_explain_their_loudest_second(
    checkpoint: Path, clips: dict[str, Path], folder: Path, capsys: pytest.CaptureFixture
) -> None:
    record = run_explain(checkpoint, clips["long"], folder / "long")
    note = "2.50 s clip: explained its loudest 1 s"
    assert note in capsys.readouterr().out
    assert record["window"]["note"].startswith(note)
    start = record["window"]["start_s"]
    assert 1.0 <= start <= 1.5 and record["window"]["end_s"] == pytest.approx(start + 1)
    assert record["times"][0] == pytest.approx(start + 0.015)  # time axis in the file's seconds

    record = run_explain(checkpoint, clips["short"], folder / "short")
    assert "zero-padded" in record["window"]["note"]

    wave = np.zeros(1000)
    wave[330:500] = 1.0  # the loudest 200 samples, on a 160-sample grid, start at 320
    assert loudest_start(wave, 200, step=160) == 320
    assert loudest_start(wave[:150], 200) == 0


def test_explain_bad_input_and_lstm(
    checkpoint: Path, clips: dict[str, Path], folder: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = folder / "bad.wav"
    bad.write_text("not audio")
    png = str(folder / "never.png")
    for path in (bad, folder / "missing.wav"):
        assert main(["explain", "--checkpoint", str(checkpoint), str(path), "--out", png]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: ") and err.count("\n") == 1
    assert main(["explain", "--checkpoint", str(bad), str(clips["tone"]), "--out", png]) == 2
    assert capsys.readouterr().err.count("\n") == 1

    lstm = tiny_checkpoint(folder / "lstm.ckpt", cell="lstm")
    assert main(["explain", "--checkpoint", str(lstm), str(clips["tone"]), "--out", png]) == 2
    err = capsys.readouterr().err
    assert "gate plots need a GRU" in err and "lstm" in err and err.count("\n") == 1
    assert not Path(png).exists()


def test_explain_refuses_an_export(
    checkpoint: Path, clips: dict[str, Path], folder: Path, capsys: pytest.CaptureFixture
) -> None:
    export = folder / "tiny_for_explain.pt"
    args = ["export", "--checkpoint", str(checkpoint), "--format", "torchscript"]
    assert main([*args, "--out", str(export)]) == 0
    capsys.readouterr()
    png = str(folder / "never.png")
    assert main(["explain", "--checkpoint", str(export), str(clips["tone"]), "--out", png]) == 2
    assert "explain needs the training checkpoint" in capsys.readouterr().err


def test_a_forward_model_explains_a_whole_recording_as_it_streams(
    folder: Path, clips: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    """Over a whole recording (not its loudest second): one forward gate track per layer,
    and each frame's keyword scores equal to what stateful streaming reads."""
    from speech_gru.core.audio import load_audio
    from speech_gru.runtime.classifier import load_classifier

    checkpoint = tiny_checkpoint(folder / "forward.ckpt", forward=True)
    record = run_explain(checkpoint, clips["long"], folder / "forward")
    out = capsys.readouterr().out
    assert "peaks: " in out and "loudest" not in out
    frames = 1 + (40000 - 640) // 320  # all 2.5 s, 20 ms frames
    assert len(record["times"]) == frames and record["window"]["note"] == ""
    assert {(g["layer"], g["direction"]) for g in record["gates"]} == {
        (1, "forward"), (2, "forward")
    }  # fmt: skip
    for g in record["gates"]:
        assert len(g["z"]) == len(g["r"]) == frames
    scores = np.array([record["scores"][label] for label in LABELS]).T  # (T, C)
    stepper = load_classifier(checkpoint).stepper
    streamed, _ = stepper(load_audio(clips["long"])[None], stepper.start(1))
    np.testing.assert_allclose(scores, streamed[0], atol=1e-5)
    assert read_png(folder / "forward.png").shape[1] > 600
