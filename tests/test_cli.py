"""`speech-gru transcribe` and `speech-gru evaluate` on generated audio, good and bad."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_gru.cli.main import main
from speech_gru.core.audio import load_audio
from tests.helpers import WORDS

pytestmark = pytest.mark.slow  # the session's trained model, or unseen voices and seconds per run


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console entry point, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "speech_gru.cli", *args], capture_output=True, text=True
    )


def keyword_clips(root: Path, per_word: int = 3) -> list[Path]:
    return [p for w in WORDS for p in sorted((root / w).glob("*.wav"))[:per_word]]


def test_transcribe_labels_unseen_speakers(checkpoint: Path, unseen_dir: Path) -> None:
    clips = keyword_clips(unseen_dir)
    result = run_cli("transcribe", "--checkpoint", str(checkpoint), *map(str, clips))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(clips)
    correct = 0
    for clip, line in zip(clips, lines, strict=True):
        path, label, score = line.split("\t")
        assert path == str(clip)
        assert 0.0 <= float(score) <= 1.0
        correct += label == clip.parent.name
    assert correct / len(clips) > 0.5  # 6 classes; chance is about 0.17


def test_transcribe_top_k_and_json(
    checkpoint: Path, unseen_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    clip = keyword_clips(unseen_dir, 1)[0]
    assert main(["transcribe", "--checkpoint", str(checkpoint), "--top-k", "3", str(clip)]) == 0
    fields = capsys.readouterr().out.strip().split("\t")
    assert fields[0] == str(clip) and len(fields) == 7
    scores = [float(s) for s in fields[2::2]]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-6
    assert len(set(fields[1::2])) == 3

    assert main(["transcribe", "--checkpoint", str(checkpoint), "--json", str(clip)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["path"] == str(clip)
    assert record["label"] == record["top"][0]["label"]
    assert record["score"] == pytest.approx(scores[0], abs=1e-4)


def test_transcribe_walks_folders(
    checkpoint: Path, unseen_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["transcribe", "--checkpoint", str(checkpoint), str(unseen_dir / "yes")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(list((unseen_dir / "yes").glob("*.wav")))


def test_transcribe_resamples_and_mixes_down(
    checkpoint: Path, unseen_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A 44.1 kHz stereo copy of a clip gets the same label as the 16 kHz mono original."""
    import soxr

    clip = keyword_clips(unseen_dir, 1)[0]
    wave = load_audio(clip)
    hi = soxr.resample(wave, 16000, 44100)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([hi, hi], axis=1), 44100, subtype="PCM_16")
    flac = tmp_path / "mono.flac"
    sf.write(flac, wave, 16000)
    args = ["transcribe", "--checkpoint", str(checkpoint), "--json"]
    assert main([*args, str(clip), str(stereo), str(flac)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len({r["label"] for r in records}) == 1
    assert records[1]["score"] == pytest.approx(records[0]["score"], abs=0.02)


def test_transcribe_reports_bad_files_and_carries_on(
    checkpoint: Path, unseen_dir: Path, tmp_path: Path
) -> None:
    good = keyword_clips(unseen_dir, 1)[0]
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "notes.ogg").write_text("this is not audio\n")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])
    (tmp_path / "no_audio").mkdir()
    bad = {
        "missing.wav": "file not found",
        "empty.wav": "empty",
        "noise.wav": "corrupt",
        "notes.ogg": "corrupt",
        "truncated.wav": "",
        "no_audio": "no audio files",
    }
    paths = [str(tmp_path / name) for name in bad]
    result = run_cli("transcribe", "--checkpoint", str(checkpoint), paths[0], str(good), *paths[1:])
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(str(good) + "\t")
    *errors, summary = result.stderr.strip().splitlines()
    assert len(errors) == len(bad), result.stderr  # one line each, no traceback
    assert summary.startswith("summary: 7 files: 1 done, 6 failed"), summary
    for line, (name, problem) in zip(errors, bad.items(), strict=True):
        assert line.startswith(f"error: {tmp_path / name}: ")
        assert problem in line
    assert "Traceback" not in result.stderr


def test_bad_checkpoint_is_one_line_error(tmp_path: Path, unseen_dir: Path) -> None:
    fake = tmp_path / "model.ckpt"
    fake.write_bytes(b"not a checkpoint")
    clip = str(keyword_clips(unseen_dir, 1)[0])
    for ckpt, problem in [(fake, "not a checkpoint"), (tmp_path / "none.ckpt", "not found")]:
        result = run_cli("transcribe", "--checkpoint", str(ckpt), clip)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {ckpt}: ")
        assert problem in lines[0]


def canonical_test_folder(unseen_dir: Path, root: Path) -> Path:
    """The canonical test-archive layout: label folders, _unknown_ and _silence_."""
    for word in WORDS:
        shutil.copytree(unseen_dir / word, root / word)
    (root / "_unknown_").mkdir()
    for path in sorted((unseen_dir / "cat").glob("*.wav")):
        shutil.copy(path, root / "_unknown_" / f"cat_{path.name}.wav")
    (root / "_silence_").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(root / "_silence_" / f"{i}.wav", 0.01 * rng.standard_normal(16000), 16000)
    return root


def test_evaluate_scores_a_canonical_test_folder(
    checkpoint: Path, unseen_dir: Path, tmp_path: Path
) -> None:
    folder = canonical_test_folder(unseen_dir, tmp_path / "test")
    (folder / "yes" / "broken.wav").write_bytes(b"RIFF....WAVE")
    out = tmp_path / "report"
    result = run_cli("evaluate", "--checkpoint", str(checkpoint), str(folder), "--out", str(out))
    assert result.returncode == 1, result.stderr  # a clip failed; the report is still written
    report = json.loads((out / "evaluation.json").read_text())
    overall, keywords = result.stdout.strip().splitlines()[-2:]
    assert overall == f"accuracy: {report['accuracy']:.4f}"
    confusion = np.array(report["confusion"])
    rows = [i for i, label in enumerate(report["labels"]) if not label.startswith("_")]
    spoken = confusion[rows][:, rows].trace() / confusion[rows].sum()  # silence, unknown aside
    assert report["keyword_accuracy"] == pytest.approx(spoken)
    assert keywords == f"keyword accuracy: {spoken:.4f} (clips of keywords only)"
    assert report["accuracy"] > 0.5
    n_clips = sum(1 for p in folder.rglob("*.wav")) - 1  # the broken file is reported
    assert report["total"] == n_clips == int(np.sum(report["confusion"]))
    support = {row["label"]: row["support"] for row in report["per_class"]}
    assert support["_silence_"] == 4 and support["_unknown_"] == 6
    assert len(report["errors"]) == 1 and "broken.wav" in result.stderr
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for label in support:
        assert any(line.startswith(label) for line in result.stdout.splitlines())


def test_evaluate_writes_next_to_the_checkpoint_by_default(
    checkpoint: Path, unseen_dir: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "copy.ckpt"
    shutil.copy(checkpoint, ckpt)
    result = run_cli("evaluate", "--checkpoint", str(ckpt), str(unseen_dir))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "confusion_matrix.png").is_file()
    assert (tmp_path / "evaluation.json").is_file()


def test_evaluate_rejects_a_folder_without_labelled_audio(checkpoint: Path, tmp_path: Path) -> None:
    result = run_cli("evaluate", "--checkpoint", str(checkpoint), str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and str(tmp_path) in result.stderr
