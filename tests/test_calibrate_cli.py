"""`speech-gru calibrate` end to end on the session model, and the operating point after it:
stored in the checkpoint (nothing else touched), carried by exports, shown by `info`, used
by `stream` and `transcribe` unless a flag overrides it."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from speech_gru.cli.main import build_parser, main
from speech_gru.cli.options import detector_config
from speech_gru.runtime.checkpoint import ModelLoadError, OperatingPoint
from speech_gru.runtime.classifier import load_classifier
from speech_gru.runtime.detector import DetectorConfig
from tests.helpers import LABELS, tiny_checkpoint

pytestmark = pytest.mark.slow  # every test here uses the session's trained model

TARGET = "60"  # false alarms per hour: a few minutes of synthetic negatives measure it
TRUST = ["--trust-torchscript"]  # these tests load TorchScript exports they wrote themselves


@pytest.fixture(scope="module")
def calibrated(
    checkpoint: Path, commands_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """A copy of the session checkpoint (shared: never modified) calibrated in place, and
    what the command printed (capsys is per test: captured here directly)."""
    path = tmp_path_factory.mktemp("calibrated") / "best.ckpt"
    shutil.copyfile(checkpoint, path)
    args = ["calibrate", "--checkpoint", str(path), "--clips", str(commands_dir),
            "--split", "all", "--target-fa", TARGET, "--averages", "0.3", "0.5",
            "--hit-clips", "12"]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(args)
    assert status == 0, err.getvalue()
    return path, out.getvalue()


def point_of(path: Path) -> OperatingPoint:
    return OperatingPoint.from_dict(torch.load(path, weights_only=True)["operating_point"])


def same(a: object, b: object) -> bool:
    """Equal, tensors included, through nested dicts and lists."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def test_calibrate_adds_only_the_operating_point(checkpoint: Path, calibrated) -> None:
    from speech_gru.train.callbacks import AtomicCheckpointIO

    path, printed = calibrated
    before = torch.load(checkpoint, map_location="cpu", weights_only=True)
    after = AtomicCheckpointIO().load_checkpoint(path)  # as the trainer resumes: weights-only
    assert set(after) == set(before) | {"operating_point"}
    assert all(same(before[key], after[key]) for key in before)  # weights, optimiser, loops
    point = OperatingPoint.from_dict(after["operating_point"], LABELS)
    assert point.target_fa_per_hour == float(TARGET) and point.fa_per_hour <= float(TARGET)
    assert point.average_s in (0.3, 0.5) and point.hop_s == DetectorConfig().hop_s
    assert point.negative_s > 120 and point.hit_rate is not None and point.created
    assert "every split" in point.source
    assert f"chosen: {point.settings_text()}" in printed
    assert f"measured: {point.measured_text()}" in printed
    assert "only the key operating_point was added" in printed
    rows = [line for line in printed.splitlines() if line.strip().endswith("<- chosen")]
    assert len(rows) == 1 and f"{point.threshold:.4f}" in rows[0]
    assert load_classifier(path).operating_point == point


def test_info_shows_the_operating_point(calibrated, checkpoint: Path, capsys) -> None:
    path, _ = calibrated
    point = point_of(path)
    assert main(["info", "--checkpoint", str(path)]) == 0
    assert f"operating point: {point.settings_text()}; {point.measured_text()}" in (
        capsys.readouterr().out
    )
    assert main(["info", "--checkpoint", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["operating_point"] == point.to_dict()
    assert main(["info", "--checkpoint", str(checkpoint)]) == 0
    assert "operating point: not calibrated" in capsys.readouterr().out


@pytest.fixture(scope="module")
def calibrated_exports(calibrated, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    path, _ = calibrated
    folder = tmp_path_factory.mktemp("calibrated-exports")
    exports = {}
    for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        exports[fmt] = folder / f"kws{suffix}"
        args = ["export", "--checkpoint", str(path), "--format", fmt, "--out", str(exports[fmt])]
        assert main(args) == 0
    return exports


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exports_carry_the_operating_point(calibrated, calibrated_exports, fmt: str, capsys):
    point = point_of(calibrated[0])
    export = calibrated_exports[fmt]
    classifier = load_classifier(export, trust_torchscript=True)
    assert classifier.operating_point == point
    if fmt == "onnx":  # readable without speech_gru, as the labels are
        meta = {p.key: p.value for p in onnx.load(str(export)).metadata_props}
    else:
        extra = {"metadata.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.load(str(export), _extra_files=extra)
        meta = json.loads(extra["metadata.json"])
    assert json.loads(meta["operating_point"]) == point.to_dict()
    capsys.readouterr()
    assert main(["info", "--checkpoint", str(export), "--json", *TRUST]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["operating_point"] == point.to_dict()
    assert "operating_point" not in card["metadata"]


@pytest.fixture(scope="module")
def long_wav(commands_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two keyword clips over quiet noise: 5 s."""
    rng = np.random.default_rng(0)
    words = [sf.read(sorted((commands_dir / w).glob("*.wav"))[0], dtype="float32")[0]
             for w in ("yes", "no")]  # fmt: skip
    gap = lambda: 0.002 * rng.standard_normal(16000).astype(np.float32)  # noqa: E731
    wave = np.concatenate([gap(), words[0], gap(), words[1], gap()])
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, wave, 16000, subtype="PCM_16")
    return path


def test_stream_uses_the_calibrated_point_unless_a_flag_overrides_it(
    calibrated, calibrated_exports, checkpoint: Path, long_wav: Path, capsys
) -> None:
    path, _ = calibrated
    point = point_of(path)
    expected = f"operating point: calibrated for {float(TARGET):g} false alarms/h "
    for model in (path, calibrated_exports["onnx"]):
        assert main(["stream", "--checkpoint", str(model), "--input", str(long_wav)]) == 0
        err = capsys.readouterr().err
        assert f"{expected}({point.settings_text()})" in err.splitlines()
    args = ["stream", "--checkpoint", str(path), "--input", str(long_wav), "--threshold", "0.97"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (
        f"{expected.rstrip()}, overridden by --threshold (threshold 0.97, average "
        f"{point.average_s:g} s, refractory {point.refractory_s:g} s)"
    ) in err.splitlines()
    assert main(["stream", "--checkpoint", str(checkpoint), "--input", str(long_wav)]) == 0
    d = DetectorConfig()
    assert (
        f"operating point: defaults, the model is not calibrated (threshold {d.threshold:g}, "
        f"average {d.average_s:g} s, refractory {d.refractory_s:g} s)"
    ) in capsys.readouterr().err.splitlines()


def test_detector_config_takes_each_setting_from_flag_point_or_default(calibrated) -> None:
    classifier = load_classifier(calibrated[0])
    point = classifier.operating_point
    parse = build_parser().parse_args
    config = detector_config(parse(["stream", "--checkpoint", "m"]), 32, classifier)
    assert (config.threshold, config.average_s, config.refractory_s) == (
        point.threshold, point.average_s, point.refractory_s,
    )  # fmt: skip
    args = parse(["stream", "--checkpoint", "m", "--average", "0", "--refractory", "2"])
    config = detector_config(args, 1, classifier)
    assert (config.threshold, config.average_s, config.refractory_s) == (point.threshold, 0, 2)
    assert config.batch_windows == 1
    assert detector_config(args, 1).threshold == DetectorConfig().threshold  # no model
    per_keyword = OperatingPoint(0.9, 0.5, 1.5, 0.1, thresholds={"yes": 0.6, "no": 0.9})
    classifier.operating_point = per_keyword
    config = detector_config(parse(["stream", "--checkpoint", "m"]), 32, classifier)
    assert config.thresholds == {"yes": 0.6, "no": 0.9}
    forced = detector_config(parse(["stream", "--checkpoint", "m", "--threshold", "0.8"]), 32,
                             classifier)  # fmt: skip
    assert forced.threshold == 0.8 and forced.thresholds == {}  # one flag for all keywords


def test_transcribe_names_the_point_only_for_long_recordings(
    calibrated, commands_dir: Path, long_wav: Path, capsys
) -> None:
    path, _ = calibrated
    clip = sorted((commands_dir / "yes").glob("*.wav"))[0]
    assert main(["transcribe", "--checkpoint", str(path), str(long_wav)]) == 0
    *_, line, summary = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("operating point: calibrated for") and summary.startswith("summary:")
    assert main(["transcribe", "--checkpoint", str(path), str(clip)]) == 0
    assert "operating point" not in capsys.readouterr().err


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_calibrate_negative_recordings_into_a_new_file(
    checkpoint: Path, tmp_path: Path, capsys
) -> None:
    source = tmp_path / "best.ckpt"
    shutil.copyfile(checkpoint, source)
    before = source.read_bytes()
    noise = (0.01 * np.random.default_rng(0).standard_normal(16000 * 20)).astype(np.float32)
    sf.write(tmp_path / "room.wav", noise, 16000)
    out = tmp_path / "calibrated.ckpt"
    args = ["calibrate", "--checkpoint", str(source), "--negatives", str(tmp_path / "room.wav"),
            "--target-fa", "1", "--averages", "0.5", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "note: 20 s of negative audio cannot measure 1 false alarms/h" in printed
    assert source.read_bytes() == before  # --out: the checkpoint itself is left alone
    point = point_of(out)
    assert point.false_alarms == 0 and point.average_s == 0.5 and point.negative_s == 20
    assert "1 recording: " in point.source and "room.wav" in point.source


def test_calibrate_refusals_are_one_line_errors(
    calibrated, calibrated_exports, tmp_path: Path, capsys
) -> None:
    path, _ = calibrated
    export = calibrated_exports["onnx"]
    args = ["--target-fa", "1", "--negatives", str(path)]
    assert main(["calibrate", "--checkpoint", str(export), *args]) == 2
    assert one_error(capsys) == (
        f"error: {export}: an exported (onnx) model cannot be calibrated; calibrate the "
        "training checkpoint, then export it"
    )
    assert main(["calibrate", "--checkpoint", str(path), *args, "--out", str(export)]) == 2
    assert one_error(capsys) == f"error: --out {export}: exists and is not a training checkpoint"
    missing = tmp_path / "missing.wav"
    assert main(["calibrate", "--checkpoint", str(path), "--target-fa", "1",
                 "--negatives", str(missing)]) == 2  # fmt: skip
    assert one_error(capsys) == f"error: {missing}: file not found"
    (tmp_path / "empty").mkdir()
    assert main(["calibrate", "--checkpoint", str(path), "--target-fa", "1",
                 "--clips", str(tmp_path / "empty")]) == 2  # fmt: skip
    assert "no clips without keywords" in one_error(capsys)


def rewrite_onnx(src: Path, dst: Path, value: str) -> Path:
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == "operating_point":
            prop.value = value
    onnx.save(model, str(dst))
    return dst


def rewrite_torchscript(src: Path, dst: Path, value: str) -> Path:
    extra = {"labels.json": "", "metadata.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(src), _extra_files=extra)
        meta = {**json.loads(extra["metadata.json"]), "operating_point": value}
        torch.jit.save(module, str(dst), _extra_files={**extra, "metadata.json": json.dumps(meta)})
    return dst


BAD_POINTS = {
    "not-json": ("{threshold", "is not a JSON object"),
    "list": ("[0.5]", "not a mapping"),
    "threshold": ('{"threshold": 2, "average_s": 0.5, "refractory_s": 1, "hop_s": 0.1}',
                  "threshold must be a number from 0 to 1"),
    "keyword": ('{"threshold": 0.5, "average_s": 0.5, "refractory_s": 1, "hop_s": 0.1, '
                '"thresholds": {"maybe": 0.5}}', "'maybe', which is not a label"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_POINTS))
@pytest.mark.parametrize("kind", ["checkpoint", "torchscript", "onnx"])
def test_malformed_operating_points_are_one_line_errors(
    calibrated, calibrated_exports, tmp_path: Path, capsys, case: str, kind: str
) -> None:
    text, problem = BAD_POINTS[case]
    if kind == "checkpoint":
        state = torch.load(calibrated[0], weights_only=True)
        state["operating_point"] = json.loads(text) if case != "not-json" else text
        path = tmp_path / "bad.ckpt"
        torch.save(state, path)
    elif kind == "onnx":
        path = rewrite_onnx(calibrated_exports["onnx"], tmp_path / "bad.onnx", text)
    else:
        path = rewrite_torchscript(calibrated_exports["torchscript"], tmp_path / "bad.pt", text)
    with pytest.raises(ModelLoadError) as caught:
        load_classifier(path, trust_torchscript=True)
    message = str(caught.value)
    assert message.startswith(f"{path}: operating_point metadata ") and problem in message
    commands = [["stream", "--checkpoint", str(path), *TRUST, "--input", str(path)],
                ["info", "--checkpoint", str(path), *TRUST]]  # fmt: skip
    if kind == "checkpoint":
        commands.append(["export", "--checkpoint", str(path), "--out", str(tmp_path / "x.pt")])
    for command in commands:
        assert main(command) == 2
        assert one_error(capsys) == f"error: {message}"


# -- calibrate never reverts a checkpoint ---------------------------------------------------


@pytest.fixture
def tiny_run(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny checkpoint in a run folder and 5 s of keyword-free noise."""
    (tmp_path / "run").mkdir()
    path = tiny_checkpoint(tmp_path / "run" / "best.ckpt")
    noise = (0.01 * np.random.default_rng(0).standard_normal(16000 * 5)).astype(np.float32)
    sf.write(tmp_path / "room.wav", noise, 16000)
    return path, tmp_path / "room.wav"


def test_calibrate_does_not_revert_a_checkpoint_saved_meanwhile(
    tiny_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Training saves the checkpoint again while calibrate scores negatives: the newer file
    stays, with no operating point of the older weights written over it."""
    from speech_gru.analysis import calibrate as calibration
    from speech_gru.runtime.checkpoint import read_checkpoint, write_checkpoint

    path, room = tiny_run
    search = calibration.calibrate

    def saved_meanwhile(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        newer = read_checkpoint(path)
        newer["epoch"] = 999
        write_checkpoint(newer, path)
        return search(*args, **kwargs)

    monkeypatch.setattr(calibration, "calibrate", saved_meanwhile)
    args = ["calibrate", "--checkpoint", str(path), "--negatives", str(room),
            "--target-fa", "1", "--averages", "0.5"]  # fmt: skip
    assert main(args) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: {path}: changed on disk since it was read"), line
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 999 and "operating_point" not in saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"]  # no backup, no temp


def test_calibrate_keeps_the_previous_file_as_a_backup(tiny_run: tuple[Path, Path], capsys):
    path, room = tiny_run
    before = path.read_bytes()
    args = ["calibrate", "--checkpoint", str(path), "--negatives", str(room),
            "--target-fa", "1", "--averages", "0.5"]  # fmt: skip
    assert main(args) == 0
    backup = path.with_name("best.ckpt.bak")
    assert f"the previous file is kept as {backup}" in capsys.readouterr().out
    assert backup.read_bytes() == before and "operating_point" in torch.load(
        path, weights_only=True
    )
    assert main(args) == 0  # again: the backup is the file just replaced
    assert "operating_point" in torch.load(backup, weights_only=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt", "best.ckpt.bak"]
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    assert "best.ckpt.bak" in " ".join(capsys.readouterr().out.split())  # the help says where


def test_calibrate_refuses_negatives_shorter_than_one_window(
    tiny_run: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    path, _ = tiny_run
    before = path.read_bytes()
    short = tmp_path / "ten_samples.wav"
    sf.write(short, np.zeros(10, np.float32), 16000)
    args = ["calibrate", "--checkpoint", str(path), "--negatives", str(short),
            "--target-fa", "1"]  # fmt: skip
    assert main(args) == 2
    line = one_error(capsys)
    assert line.startswith("error: --negatives: negative audio shorter than one window"), line
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"]
