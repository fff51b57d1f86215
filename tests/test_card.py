"""The model card (`speech_gru.analysis.card`, `speech-gru info`) of checkpoints and exports."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from speech_gru.analysis import card
from speech_gru.cli.main import main
from speech_gru.core.labels import LABEL_SETS
from speech_gru.runtime.checkpoint import ModelLoadError
from speech_gru.train.lit import KeywordSpotter
from tests.helpers import TINY_LABELS as LABELS
from tests.helpers import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("card")


@pytest.fixture(scope="module")
def checkpoint(folder: Path) -> Path:
    return tiny_checkpoint(folder / "tiny.ckpt")


def card_text(capsys: pytest.CaptureFixture) -> str:
    """Printed output with the model card's column alignment collapsed to single spaces."""
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_card_reads_a_checkpoint_without_lightning(checkpoint: Path) -> None:
    code = (
        "import json, sys\n"
        "import speech_gru.analysis.card\n"
        "assert 'lightning' not in sys.modules, 'importing the card module imports lightning'\n"
        "c = speech_gru.analysis.card.model_card(sys.argv[1])\n"
        "assert 'lightning' not in sys.modules, 'model_card imports lightning'\n"
        "print(json.dumps(c['parameters']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(checkpoint)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    model = KeywordSpotter.load_from_checkpoint(checkpoint, map_location="cpu").model
    parameters = json.loads(done.stdout)
    assert parameters["total"] == model.num_parameters()
    assert parameters == card.parameter_counts(model)


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
    printed = json.loads(capsys.readouterr().out)
    assert printed == card.model_card(checkpoint)
    assert printed["labels"] == LABELS and printed["test_metrics"] is None
    parts = printed["parameters"]
    assert parts["total"] == total == parts["encoder"] + parts["pooling"] + parts["head"]
    assert parts["frontend"] == parts["norm"] == 0
    assert parts["encoder"] == sum(p.numel() for p in model.encoder.parameters())
    assert printed["architecture"]["hidden_size"] == 16
    assert printed["architecture"]["bidirectional"]
    assert printed["training"]["global_step"] == 1

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


def test_info_of_an_lstm(folder: Path, capsys: pytest.CaptureFixture) -> None:
    lstm = tiny_checkpoint(folder / "lstm.ckpt", cell="lstm")
    assert main(["info", "--checkpoint", str(lstm)]) == 0
    assert "bidirectional LSTM, 2 layers x 16 units" in card_text(capsys)


def test_info_on_exports(checkpoint: Path, folder: Path, capsys: pytest.CaptureFixture) -> None:
    cards = {}
    for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        if fmt == "onnx":
            pytest.importorskip("onnxruntime")
        path = folder / f"tiny{suffix}"
        assert main(["export", "--checkpoint", str(checkpoint), "--format", fmt,
                     "--out", str(path)]) == 0  # fmt: skip
        capsys.readouterr()
        trust = ["--trust-torchscript"] if fmt == "torchscript" else []
        assert main(["info", "--checkpoint", str(path), *trust]) == 0
        text = card_text(capsys)
        assert f"({fmt}," in text and "_silence_ _unknown_ yes no" in text
        assert "test accuracy: not recorded" in text and "input:" in text
        assert ("runs code: yes" in text) == (fmt == "torchscript"), text
        assert main(["info", "--checkpoint", str(path), "--json", *trust]) == 0
        cards[fmt] = json.loads(capsys.readouterr().out)
        assert cards[fmt]["runs_code"] == (fmt == "torchscript")
    original = card.model_card(checkpoint)
    assert original["runs_code"] is False
    for exported in cards.values():
        assert exported["parameters"] == original["parameters"]
        assert exported["architecture"] == original["architecture"]
        assert exported["features"] == original["features"]


def test_export_whose_metadata_is_no_model_is_a_one_line_error(
    checkpoint: Path, folder: Path, capsys: pytest.CaptureFixture
) -> None:
    export = folder / "tiny_bad_meta_source.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript",
                 "--out", str(export)]) == 0  # fmt: skip
    extra = {"labels.json": "", "metadata.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        module = torch.jit.load(str(export), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra["metadata.json"])
        meta["hyper_parameters"] = json.dumps({"architecture": {"cell": "transformer"}})
        bad = folder / "tiny_bad_meta.pt"
        files = {"labels.json": extra["labels.json"], "metadata.json": json.dumps(meta)}
        torch.jit.save(module, str(bad), _extra_files=files)
    with pytest.raises(ModelLoadError, match="hyper_parameters metadata does not describe"):
        card.model_card(bad, trust_torchscript=True)
    capsys.readouterr()
    assert main(["info", "--checkpoint", str(bad), "--trust-torchscript"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: ") and "cell must be one of" in err
    assert err.count("\n") == 1


def test_label_set_name() -> None:
    assert card.label_set_name(LABELS) == "custom"
    twelve = list(LABEL_SETS["v2_12"])  # v1_12 holds the same words
    assert card.label_set_name(twelve) == "v2_12"
    assert card.label_set_name(twelve, "v0.01") == "v1_12"
