"""`speech-gru explain` and `speech-gru info` on a tiny checkpoint trained for one step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from speech_gru.audio import loudest_start, write_wav
from speech_gru.cli import main
from speech_gru.explain import explain_file
from speech_gru.lit import KeywordSpotter

LABELS = ["_silence_", "_unknown_", "yes", "no"]


class TinyData(L.LightningDataModule):
    """Four random clips; its hyper-parameters stand in for the recipe's data settings."""

    def __init__(self, root: str = "synthetic/commands", version: str = "folder") -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        waves = 0.1 * torch.randn(4, 16000, generator=g)
        return DataLoader(TensorDataset(waves, torch.tensor([0, 1, 2, 3])), batch_size=2)

    def val_dataloader(self) -> DataLoader:
        return self.train_dataloader()


def tiny_checkpoint(path: Path, cell: str = "gru") -> Path:
    """A checkpoint as the recipe writes one, after one training step on random clips."""
    torch.manual_seed(0)
    module = KeywordSpotter(
        labels=LABELS, cell=cell, hidden_size=16, num_layers=2, attention_dim=8, batch_size=2
    )
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(module, datamodule=TinyData())
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and far faster when other jobs hold cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def card_text(capsys: pytest.CaptureFixture) -> str:
    """Printed output with the model card's column alignment collapsed to single spaces."""
    return " ".join(capsys.readouterr().out.split())


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
    from speech_gru.audio import load_audio
    from speech_gru.infer import load_checkpoint_model

    model, _, _ = load_checkpoint_model(checkpoint)
    wave = torch.from_numpy(load_audio(clips["tone"]))[None]
    with torch.no_grad():
        probabilities = model(wave).softmax(-1)[0].numpy()
    explanation = explain_file(checkpoint, clips["tone"])
    np.testing.assert_allclose(explanation.probabilities, probabilities, atol=1e-6)
    assert explanation.features.shape == (98, 40)


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
    assert main(["info", "--checkpoint", str(lstm)]) == 0  # the model card still works
    assert "bidirectional LSTM" in card_text(capsys)


def test_info_model_card(checkpoint: Path, folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "--checkpoint", str(checkpoint)]) == 0
    text = card_text(capsys)
    assert "_silence_ _unknown_ yes no" in text
    model = KeywordSpotter.load_from_checkpoint(checkpoint, map_location="cpu").model
    total = model.num_parameters()
    assert f"{total:,}" in text
    assert "bidirectional GRU, 2 layers x 16 units" in text
    assert "n_fft 480 (30 ms), hop 160 (10 ms)" in text
    assert "root synthetic/commands, version folder, label set custom" in text
    assert "test accuracy: not recorded" in text

    assert main(["info", "--checkpoint", str(checkpoint), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["labels"] == LABELS and card["test_metrics"] is None
    parts = card["parameters"]
    assert parts["total"] == total == parts["encoder"] + parts["pooling"] + parts["head"]
    assert parts["frontend"] == parts["norm"] == 0
    assert parts["encoder"] == sum(p.numel() for p in model.encoder.parameters())
    assert card["architecture"]["hidden_size"] == 16 and card["architecture"]["bidirectional"]
    assert card["training"]["global_step"] == 1

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["test_metrics"] = {"test/acc": 0.8125, "test/loss": 0.5}
    tested = folder / "tested.ckpt"
    torch.save(state, tested)
    assert main(["info", "--checkpoint", str(tested)]) == 0
    assert "test accuracy: 0.8125 (test/loss 0.5)" in card_text(capsys)
    assert main(["info", "--checkpoint", str(tested), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_metrics"]["test/acc"] == 0.8125

    assert main(["info", "--checkpoint", str(folder / "missing.ckpt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_info_on_exports(checkpoint: Path, folder: Path, capsys: pytest.CaptureFixture) -> None:
    card = {}
    for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        if fmt == "onnx":
            pytest.importorskip("onnxruntime")
        path = folder / f"tiny{suffix}"
        assert main(["export", "--checkpoint", str(checkpoint), "--format", fmt,
                     "--out", str(path)]) == 0  # fmt: skip
        capsys.readouterr()
        assert main(["info", "--checkpoint", str(path)]) == 0
        text = card_text(capsys)
        assert f"({fmt}," in text and "_silence_ _unknown_ yes no" in text
        assert "test accuracy: not recorded" in text and "input:" in text
        assert main(["info", "--checkpoint", str(path), "--json"]) == 0
        card[fmt] = json.loads(capsys.readouterr().out)
        assert main(["explain", "--checkpoint", str(path), str(path), "--out", "x.png"]) == 2
        assert "explain needs the training checkpoint" in capsys.readouterr().err
    assert main(["info", "--checkpoint", str(checkpoint), "--json"]) == 0
    original = json.loads(capsys.readouterr().out)
    for exported in card.values():
        assert exported["parameters"] == original["parameters"]
        assert exported["architecture"] == original["architecture"]
        assert exported["features"] == original["features"]
