"""Rough edges a new user hit (issue 17): CSV top-k, evaluate's clip window and split,
torchmetrics scores, declared dependencies, quiet exports.

Everything runs on a tiny untrained checkpoint or a stand-in classifier, in seconds.
"""

from __future__ import annotations

import ast
import csv
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_gru.analysis.evaluate import Report, evaluate_folder
from speech_gru.cli.main import main
from speech_gru.core.audio import write_wav
from speech_gru.runtime.classifier import Classifier
from speech_gru.runtime.detector import Event
from speech_gru.runtime.transcribe import ClipResult, EventResult, csv_header, format_record
from speech_gru.train.corpus import speaker_of, which_set
from tests.helpers import tone_burst

REPO = Path(__file__).resolve().parents[1]
LABELS = ["_silence_", "_unknown_", "yes", "no"]
FOLDER_SPLIT = {
    "version": "folder",
    "validation_percent": 25.0,
    "testing_percent": 25.0,
    "split_salt": "rough",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def save_checkpoint(path: Path, datamodule: dict | None = None) -> Path:
    """An untrained checkpoint (default architecture) with the keys the recipe writes."""
    from speech_gru.train.lit import KeywordSpotter

    torch.manual_seed(0)
    module = KeywordSpotter(labels=LABELS)
    checkpoint = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    if datamodule is not None:
        checkpoint["datamodule_hyper_parameters"] = datamodule
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", FOLDER_SPLIT)


def loudness_classifier() -> Classifier:
    """``yes`` for a window holding the tone (RMS above 0.1), else ``_silence_``."""

    def backend(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        loud = np.sqrt((batch**2).mean(1)) > 0.1  # (B,)
        probs = np.full((len(batch), len(LABELS)), 0.1, dtype=np.float32)
        probs[:, 0] += 0.6 * ~loud
        probs[:, 2] += 0.6 * loud
        return probs

    return Classifier(backend, LABELS, Path("stand-in"), "checkpoint")


# ---------------------------------------------------------------------- 1. CSV and --top-k


def test_csv_header_has_one_label_and_score_column_pair_per_extra_label() -> None:
    assert csv_header() == "path,label,score,start_s,end_s"
    assert csv_header(3) == "path,label,score,start_s,end_s,label_2,score_2,label_3,score_3"


def test_csv_rows_carry_top_k_and_match_the_header() -> None:
    clip = ClipResult(Path("a,b.wav"), [("yes", 0.7), ("no", 0.2), ("_unknown_", 0.05)])
    event = EventResult(Path("talk.wav"), Event("no", 1.0, 2.0, 0.9, 2.0))
    lines = [csv_header(3), format_record(clip, "csv", 3), format_record(event, "csv", 3)]
    header, clip_row, event_row = csv.reader(lines)
    assert clip_row == ["a,b.wav", "yes", "0.7000", "", "", "no", "0.2000", "_unknown_", "0.0500"]
    assert event_row == ["talk.wav", "no", "0.9000", "1.00", "2.00", "", "", "", ""]
    assert len(header) == len(clip_row) == len(event_row)
    assert format_record(clip, "csv") == '"a,b.wav",yes,0.7000,,'  # one label: as before


def test_transcribe_csv_prints_the_top_k_labels(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clips = []
    for i in range(2):
        write_wav(
            path := tmp_path / f"clip{i}.wav", tone_burst(start_s=0.2, length_s=0.3 * (i + 1))
        )
        clips.append(str(path))
    args = ["transcribe", "--checkpoint", str(checkpoint), *clips]
    assert main([*args, "--top-k", "3"]) == 0
    text = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert main([*args, "--top-k", "3", "--format", "csv"]) == 0
    header, *rows = csv.reader(capsys.readouterr().out.splitlines())
    assert header == csv_header(3).split(",")
    assert len(rows) == 2 and all(len(row) == len(header) for row in rows)
    for row, fields in zip(rows, text, strict=True):
        named = dict(zip(header, row, strict=True))
        labels = [named["label"], named["label_2"], named["label_3"]]
        scores = [named["score"], named["score_2"], named["score_3"]]
        pairs = [v for pair in zip(labels, scores, strict=True) for v in pair]
        assert [named["path"], *pairs] == fields
    # more than the model has: every label, once
    assert main([*args, "--top-k", "9", "--format", "csv"]) == 0
    header = next(csv.reader(capsys.readouterr().out.splitlines()))
    assert header == csv_header(len(LABELS)).split(",")


# ------------------------------------------------------------- 2. evaluate's loudest second


def test_evaluate_scores_the_loudest_second_of_a_two_second_clip(tmp_path: Path) -> None:
    (tmp_path / "yes").mkdir()
    write_wav(tmp_path / "yes" / "late_nohash_0.wav", tone_burst(2.0, start_s=1.2, length_s=0.6))
    write_wav(tmp_path / "yes" / "early_nohash_0.wav", tone_burst(1.0, start_s=0.1, length_s=0.6))
    report = evaluate_folder(loudness_classifier(), tmp_path, progress=False)
    assert report.errors == []
    assert report.total == 2 and report.accuracy == 1.0  # the first second is silence


# --------------------------------------------------------------------- 3. evaluate --split


def speaker_folder(root: Path, speakers: int = 16) -> list[Path]:
    clip = tone_burst(1.0, 0.2, 0.5)
    paths = []
    for word in ("yes", "no"):
        (root / word).mkdir(parents=True)
        for s in range(speakers):
            write_wav(path := root / word / f"{s:04x}beef_nohash_0.wav", clip)
            paths.append(path)
    return paths


@pytest.mark.parametrize("split", ["training", "validation", "testing"])
def test_evaluate_split_keeps_the_speakers_the_training_held_out(
    checkpoint: Path, tmp_path: Path, split: str, capsys: pytest.CaptureFixture
) -> None:
    paths = speaker_folder(tmp_path / "data")
    hp = FOLDER_SPLIT
    expected = [
        p for p in paths
        if which_set(speaker_of(p), hp["validation_percent"], hp["testing_percent"],
                     hp["split_salt"]) == split
    ]  # fmt: skip
    assert 0 < len(expected) < len(paths)
    out = tmp_path / "report"
    argv = ["evaluate", "--checkpoint", str(checkpoint), str(tmp_path / "data")]
    assert main([*argv, "--out", str(out), "--split", split]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["split"] == split and report["total"] == len(expected)
    assert f"split: {split} speakers" in capsys.readouterr().out
    assert main([*argv, "--out", str(out)]) == 0  # default: every clip
    report = json.loads((out / "evaluation.json").read_text())
    assert report["split"] == "all" and report["total"] == len(paths)


def test_evaluate_split_follows_the_list_files_of_an_official_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = speaker_folder(tmp_path / "data", speakers=4)
    rel = [p.relative_to(tmp_path / "data").as_posix() for p in paths]
    (tmp_path / "data" / "testing_list.txt").write_text("\n".join(rel[:3]) + "\n")
    (tmp_path / "data" / "validation_list.txt").write_text(rel[3] + "\n")
    ckpt = save_checkpoint(tmp_path / "v2.ckpt", {"version": "v0.02"})
    argv = ["evaluate", "--checkpoint", str(ckpt), str(tmp_path / "data"), "--out", str(tmp_path)]
    for split, count in (("testing", 3), ("validation", 1), ("training", len(paths) - 4)):
        assert main([*argv, "--split", split]) == 0
        assert json.loads((tmp_path / "evaluation.json").read_text())["total"] == count
    capsys.readouterr()


def test_evaluate_split_needs_the_training_checkpoint(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    speaker_folder(tmp_path / "data", speakers=2)
    export = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(export)]) == 0
    capsys.readouterr()
    argv = ["evaluate", "--checkpoint", str(export), "--trust-torchscript", str(tmp_path / "data")]
    argv += ["--split", "testing"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not record its data split" in err and "training checkpoint" in err


@pytest.mark.slow
def test_evaluate_does_not_import_lightning() -> None:
    code = (
        "import sys, speech_gru.analysis.evaluate\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------ 4. torchmetrics scores


def test_per_class_scores_equal_hand_computed_ones() -> None:
    # rows true, columns predicted; label 3 is never present nor predicted
    confusion = np.array([[3, 1, 0, 0], [2, 2, 0, 0], [0, 1, 4, 0], [0, 0, 0, 0]])
    rows = Report(LABELS, confusion).per_class()
    expected = [  # precision tp / column sum, recall tp / row sum, F1 their harmonic mean
        (3 / 5, 3 / 4, 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4), 4),
        (2 / 4, 2 / 4, 2 / 4, 4),
        (4 / 4, 4 / 5, 2 * 1 * (4 / 5) / (1 + 4 / 5), 5),
        (0.0, 0.0, 0.0, 0),
    ]
    for row, label, (precision, recall, f1, support) in zip(rows, LABELS, expected, strict=True):
        assert row["label"] == label and row["support"] == support
        assert row["precision"] == pytest.approx(precision, abs=1e-6)
        assert row["recall"] == pytest.approx(recall, abs=1e-6)
        assert row["f1"] == pytest.approx(f1, abs=1e-6)
    empty = Report(LABELS, np.zeros((4, 4), dtype=np.int64)).per_class()
    assert all(r["precision"] == r["recall"] == r["f1"] == r["support"] == 0 for r in empty)


def test_evaluate_uses_torchmetrics_for_the_confusion_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import speech_gru.analysis.evaluate as evaluate

    calls = []
    real = evaluate.multiclass_confusion_matrix
    monkeypatch.setattr(
        evaluate, "multiclass_confusion_matrix", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    for word, clips in (
        ("yes", [tone_burst(1, 0.2, 0.5), tone_burst(1, 0, 0)]),
        ("_silence_", [tone_burst(1, 0, 0)]),
    ):
        (tmp_path / word).mkdir()
        for i, wave in enumerate(clips):
            write_wav(tmp_path / word / f"{i}.wav", wave)
    report = evaluate_folder(loudness_classifier(), tmp_path, progress=False)
    assert calls
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[2, 2] = expected[2, 0] = expected[0, 0] = 1  # the silent "yes" clip is missed
    np.testing.assert_array_equal(report.confusion, expected)
    assert report.accuracy == pytest.approx(2 / 3)


# -------------------------------------------------------------- 5. declared dependencies


def test_every_third_party_import_is_a_declared_dependency() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_dist(r) for r in project["dependencies"]}
    extras = {_dist(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    top_level: dict[str, set[Path]] = {}  # module -> files importing it at module level
    lazy: dict[str, set[Path]] = {}
    for path in sorted((REPO / "speech_gru").glob("*.py")):
        tree = ast.parse(path.read_text())
        module_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root in sys.stdlib_module_names or root in ("speech_gru", "tools"):
                    continue
                where = top_level if id(node) in module_level else lazy
                where.setdefault(root, set()).add(path)
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for root, files in {**lazy, **top_level}.items():
        names = {_dist(d) for d in distributions.get(root, [root])}
        declared = runtime if root in top_level else runtime | extras
        if not names & declared:
            undeclared.append(f"{root} ({', '.join(sorted(p.name for p in files))})")
    assert undeclared == []
    assert "pyyaml" in runtime


def _dist(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


# ------------------------------------------------------------------ 6. quiet exports


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "quantize", "suffix"),
    [("onnx", "none", ".onnx"), ("onnx", "int8", ".onnx"), ("torchscript", "int8", ".pt")],
)
def test_a_normal_export_prints_no_warnings(
    checkpoint: Path, tmp_path: Path, fmt: str, quantize: str, suffix: str
) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / f"model{suffix}"
    argv = ["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "always"}  # as with python -X dev: nothing hidden
    result = subprocess.run(
        [sys.executable, "-m", "speech_gru.cli", *argv, "--quantize", quantize],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"wrote {out}")


def test_only_the_known_export_warnings_are_silenced() -> None:
    from speech_gru.runtime.export import known_warnings_silenced

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with known_warnings_silenced():
            warnings.warn(
                "torch.ao.quantization is deprecated and will go", DeprecationWarning, stacklevel=1
            )
            warnings.warn("something is wrong with the model", UserWarning, stacklevel=1)
            warnings.warn(
                "Converting a tensor to a Python boolean", torch.jit.TracerWarning, stacklevel=1
            )
        warnings.warn(
            "torch.ao.quantization is deprecated and will go", DeprecationWarning, stacklevel=1
        )
    # a tracer warning from this module (not nn.GRU's or the MFCC's checks) still shows
    assert [(w.category, str(w.message)) for w in seen] == [
        (UserWarning, "something is wrong with the model"),
        (torch.jit.TracerWarning, "Converting a tensor to a Python boolean"),
        (DeprecationWarning, "torch.ao.quantization is deprecated and will go"),
    ]


# ---------------------------------------------------------- 7. data users can actually get


def test_prepare_fetches_the_test_archive_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from speech_gru.train import download
    from speech_gru.train.prepare import main as prepare

    calls = []

    def fetch(name: str, root: Path) -> Path:
        calls.append((name, root))
        return root / name

    monkeypatch.setattr(download, "fetch", fetch)
    assert prepare(["--archive", "test_v0.02", "--data.root", str(tmp_path)]) == 0
    assert calls == [("test_v0.02", tmp_path)]
    out = capsys.readouterr().out
    assert f"ready in {tmp_path / 'test_v0.02'}" in out
    assert "speech_commands_test_set_v0.02.tar.gz" in out

    def fail(name: str, root: Path) -> Path:
        raise download.DownloadError("http://example/x.tar.gz: no network")

    monkeypatch.setattr(download, "fetch", fail)
    assert prepare(["--archive", "test_v0.02", "--data.root", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: http://example/x.tar.gz: no network\n"


@pytest.mark.parametrize("readme", ["README.md", "recipes/speech_commands/README.md"])
def test_readmes_name_data_users_can_get(readme: str) -> None:
    text = (REPO / readme).read_text()
    assert "../shared" not in text  # this project's machines only
    assert "speech_commands_test_set_v0.02.tar.gz" in text
    assert "prepare.py --archive test_v0.02" in text
