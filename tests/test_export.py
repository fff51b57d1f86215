"""`speech-gru export`: self-contained TorchScript and ONNX models, float32 and int8."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_gru.cli.main import main
from speech_gru.runtime.classifier import load_classifier
from tests.helpers import LABELS, tiny_checkpoint

CASES = [("torchscript", "none", ".pt"), ("onnx", "none", ".onnx"),
         ("torchscript", "int8", ".pt"), ("onnx", "int8", ".onnx")]  # fmt: skip


@pytest.fixture(scope="module")
def exports(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, Path]:
    out = tmp_path_factory.mktemp("exports")
    paths = {}
    for fmt, quantize, suffix in CASES:
        path = out / f"model-{quantize}{suffix}"
        args = ["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(path)]
        assert main([*args, "--quantize", quantize]) == 0
        paths[fmt, quantize] = path
    return paths


def waves(n: int = 4, samples: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(samples) / 16000
    tones = np.sin(2 * np.pi * rng.uniform(200, 3000, (n, 1)) * t) * np.linspace(0, 1, samples)
    return (0.1 * tones + 0.02 * rng.standard_normal((n, samples))).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_float_exports_match_the_checkpoint(exports, checkpoint: Path, fmt: str) -> None:
    original = load_classifier(checkpoint)
    exported = load_classifier(exports[fmt, "none"], trust_torchscript=True)
    assert exported.kind == fmt and exported.labels == LABELS
    for samples in (16000, 24000):  # any length, not only the training window
        x = waves(samples=samples)
        np.testing.assert_allclose(exported.predict(x), original.predict(x), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_model_with_a_conv_stem_exports_whole(fmt: str, tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "stem.ckpt", conv_stem=8)
    path = tmp_path / f"stem.{'onnx' if fmt == 'onnx' else 'pt'}"
    args = ["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(path)]
    assert main(args) == 0
    exported = load_classifier(path, trust_torchscript=True)
    x = waves()
    np.testing.assert_allclose(
        exported.predict(x), load_classifier(checkpoint).predict(x), atol=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_int8_exports_are_close_and_agree_on_labels(exports, checkpoint: Path, fmt: str) -> None:
    original = load_classifier(checkpoint).predict(waves(16))
    quantized = load_classifier(exports[fmt, "int8"], trust_torchscript=True).predict(waves(16))
    assert float((quantized - original).abs().max()) < 0.05
    assert (quantized.argmax(-1) == original.argmax(-1)).float().mean() >= 0.9


@pytest.mark.slow
def test_torchscript_runs_with_plain_torch(exports, tmp_path: Path) -> None:
    x = waves()
    np.save(tmp_path / "x.npy", x)
    code = f"""
import sys, json
sys.modules["speech_gru"] = None  # importing the package would fail
import numpy as np, torch
extra = {{"labels.json": ""}}
model = torch.jit.load({str(exports["torchscript", "none"])!r}, _extra_files=extra)
probs = model(torch.from_numpy(np.load({str(tmp_path / "x.npy")!r})))
print(json.dumps({{"labels": json.loads(extra["labels.json"]), "probs": probs.tolist()}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["labels"] == LABELS
    expected = load_classifier(exports["torchscript", "none"], trust_torchscript=True)
    expected = expected.predict(x).numpy()
    np.testing.assert_allclose(np.array(result["probs"]), expected, atol=1e-6)


@pytest.mark.slow
def test_onnx_runs_with_plain_onnxruntime(exports, tmp_path: Path) -> None:
    x = waves()
    np.save(tmp_path / "x.npy", x)
    code = f"""
import sys, json
sys.modules["speech_gru"] = None
sys.modules["torch"] = None  # onnxruntime alone
import numpy as np, onnxruntime as ort
session = ort.InferenceSession({str(exports["onnx", "none"])!r})
labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
probs = session.run(None, {{"waveform": np.load({str(tmp_path / "x.npy")!r})}})[0]
print(json.dumps({{"labels": labels, "probs": probs.tolist()}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["labels"] == LABELS
    expected = load_classifier(exports["onnx", "none"]).predict(x).numpy()
    np.testing.assert_allclose(np.array(result["probs"]), expected, atol=1e-6)


@pytest.mark.slow
def test_transcribe_and_stream_accept_exports(exports, commands_dir: Path, capsys) -> None:
    clip = sorted((commands_dir / "yes").glob("*.wav"))[0]
    labels = []
    for path in (exports["torchscript", "none"], exports["onnx", "none"]):
        trust = ["--trust-torchscript"]  # exports written here
        assert main(["transcribe", "--checkpoint", str(path), *trust, "--json", str(clip)]) == 0
        labels.append(json.loads(capsys.readouterr().out)["label"])
        assert main(["stream", "--checkpoint", str(path), *trust, "--input", str(clip)]) == 0
        capsys.readouterr()
    assert labels[0] == labels[1]


def test_bad_model_files_are_one_line_errors(tmp_path: Path, capsys) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not onnx")
    broken = tmp_path / "broken.onnx"  # starts as ONNX does, then is not
    broken.write_bytes(b"\x08\x07garbage")
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    trust = ["--trust-torchscript"]
    for path, flags, problem in (
        (fake, [], "named .onnx, so an ONNX model, but the file is neither"),
        (broken, [], "not a readable ONNX model"),
        (plain, [], "runs code of its own when loaded"),
        (plain, trust, "without labels"),
    ):
        assert main(["transcribe", "--checkpoint", str(path), *flags, str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {path}: ") and problem in err[0]
