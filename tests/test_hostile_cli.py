"""Hostile input to the `speech-gru` command line: every case is kept here so none comes back.

Out-of-range options, outputs that would destroy inputs or cannot be written, file names
with commas, newlines, terminal escapes or bytes that are not UTF-8, a reader that closes
the pipe, truncated files and damaged headers. What users rely on is checked: the exit
code, one `error: ...` line naming the file or option and the problem, no traceback, and
input files left intact. Each test makes its own audio in a temporary folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_gru.analysis.evaluate import Report
from speech_gru.cli.commands.stream import format_event
from speech_gru.cli.main import main
from speech_gru.core import audio
from speech_gru.core.audio import SAMPLE_RATE, AudioError, printable
from speech_gru.runtime.detector import Event
from tests.helpers import LABELS, WORDS, write_tone


def yes_clip(commands_dir: Path) -> Path:
    return sorted((commands_dir / "yes").glob("*.wav"))[0]


def fake_checkpoint(tmp_path: Path) -> Path:
    """Options and outputs are checked before the model is loaded: any file will do."""
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"not a checkpoint")
    return path


def run_cli(*args: str | bytes, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess:
    """The command as a user runs it; output decoded keeping bytes that are not UTF-8."""
    result = subprocess.run(
        [sys.executable, "-m", "speech_gru.cli", *args],
        stdout=stdout, stderr=subprocess.PIPE, timeout=600,
    )  # fmt: skip
    if result.stdout is not None:
        result.stdout = result.stdout.decode("utf-8", "surrogateescape")
    result.stderr = result.stderr.decode("utf-8", "surrogateescape")
    return result


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def one_error(stderr: str, *needles: str) -> str:
    """The single `error:` line of ``stderr``, which must contain every needle."""
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def no_control_characters(text: str) -> bool:
    """No control characters but the line ends and the text format's tab separators."""
    return not any(ord(c) < 0x20 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F for c in text)


# ----------------------------------------------------------------- numeric options (1, 2)

PARSE = {
    "transcribe": ["transcribe", "--checkpoint", "model.ckpt", "clip.wav"],
    "stream": ["stream", "--checkpoint", "model.ckpt", "--input", "-"],
    "evaluate": ["evaluate", "--checkpoint", "model.ckpt", "folder"],
}
OUT_OF_RANGE = [
    ("transcribe", "--batch-size", "0"),
    ("transcribe", "--batch-size", "-1"),
    ("transcribe", "--hop", "0"),
    ("transcribe", "--hop", "nan"),
    ("transcribe", "--threshold", "0"),
    ("transcribe", "--threshold", "1.5"),
    ("transcribe", "--average", "-1"),
    ("transcribe", "--refractory", "-1"),
    ("transcribe", "--top-k", "0"),
    ("transcribe", "--jobs", "0"),
    ("transcribe", "--threads", "0"),
    ("transcribe", "--batch-size", "2.5"),
    ("stream", "--rate", "0"),
    ("stream", "--channels", "0"),
    ("stream", "--threads", "0"),
    ("stream", "--hop", "-0.1"),
    ("evaluate", "--batch-size", "-5"),
]


@pytest.mark.parametrize(("command", "option", "value"), OUT_OF_RANGE)
def test_out_of_range_option_is_a_usage_error(
    command: str, option: str, value: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*PARSE[command], option, value])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"speech-gru {command}: error: argument {option}: "), err
    assert repr(value) in last


def test_help_still_works_and_defaults_are_kept(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["transcribe", "--help"])
    assert stop.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--threads" in help_text
    assert "default: the model's calibrated point, else 0.7)" in help_text
    from speech_gru.cli.main import build_parser
    from speech_gru.cli.options import detector_config

    args = build_parser().parse_args(PARSE["transcribe"])
    assert (args.batch_size, args.top_k, args.jobs, args.threads) == (64, 1, 4, 1)
    assert (args.average_s, args.threshold, args.refractory_s) == (None, None, None)  # not given
    config = detector_config(args, 32)  # no calibrated model: DetectorConfig's defaults
    assert (config.hop_s, config.average_s, config.threshold, config.refractory_s) == (
        0.1, 0.5, 0.7, 1.5,
    )  # fmt: skip
    args = build_parser().parse_args([*PARSE["stream"], "--threshold", "1", "--average", "0"])
    assert (args.rate, args.channels, args.threshold, args.average_s) == (16000, 1, 1.0, 0.0)


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--hop", "0.00001", "--hop 1e-05: must be at least 0.01 s (one frame)"),
        ("--average", "1e300", "--average 1e+300: must be at most 86400 s (a day)"),
        ("--refractory", "1e300", "--refractory 1e+300: must be at most 86400 s (a day)"),
    ],
)
def test_settings_beyond_the_detectors_limits_are_one_line(
    option: str, value: str, problem: str
) -> None:
    """A hop that would score a window every sample, spans too long to count in samples."""
    from speech_gru.cli.main import build_parser
    from speech_gru.cli.options import CliError, detector_config

    args = build_parser().parse_args([*PARSE["transcribe"], option, value])
    with pytest.raises(CliError) as err:
        detector_config(args, 32)
    assert str(err.value) == problem


@pytest.mark.slow
def test_negative_batch_size_gives_no_silent_answer(
    checkpoint: Path, commands_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    # It used to classify nothing and print `_silence_ 0.0000` (and `accuracy: 0.0000`), exit 0.
    for args in (
        ["transcribe", "--checkpoint", str(checkpoint), "--batch-size", "-1"],
        ["evaluate", "--checkpoint", str(checkpoint), "--batch-size", "-5"],
    ):
        with pytest.raises(SystemExit) as stop:
            main([*args, str(yes_clip(commands_dir))])
        assert stop.value.code == 2
        out, err = capsys.readouterr()
        assert out == "" and "--batch-size" in err


# ------------------------------------------------------------------------------ outputs (3)


def test_output_naming_an_input_is_refused_and_the_input_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    clip = write_tone(folder / "a.wav")
    ckpt = fake_checkpoint(tmp_path)
    data, model = clip.read_bytes(), ckpt.read_bytes()
    (tmp_path / "link.wav").symlink_to(clip)
    cases = [
        ([str(folder)], str(folder / "a.wav"), "inside the input folder"),  # truncated it
        ([str(folder)], str(folder / "new.FLAC"), "inside the input folder"),
        ([str(clip)], str(clip), "is the input"),
        ([str(clip)], str(folder / ".." / "clips" / "a.wav"), "is the input"),
        ([str(tmp_path / "link.wav")], str(clip), "is the input"),
        ([str(clip)], str(ckpt), "is the input"),
    ]
    for inputs, output, problem in cases:
        assert main(["transcribe", "--checkpoint", str(ckpt), "--output", output, *inputs]) == 2
        out, err = capsys.readouterr()
        assert one_error(err, problem).startswith(f"error: --output {output}: ")
        assert clip.read_bytes() == data and ckpt.read_bytes() == model
        assert out == ""
    assert sorted(p.name for p in folder.iterdir()) == ["a.wav"]  # nothing written


@pytest.mark.slow
def test_a_report_inside_the_input_folder_is_written_and_not_read(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    clip = write_tone(folder / "a.wav")
    report = folder / "results.csv"
    argv = ["transcribe", "--checkpoint", str(checkpoint), "--format", "csv"]
    assert main([*argv, "--output", str(report), str(folder)]) == 0
    rows = list(csv.reader(report.open(newline="")))
    assert rows[0][0] == "path" and [row[0] for row in rows[1:]] == [str(clip)]


@pytest.mark.parametrize(
    ("name", "problem"),
    [("missing/out.txt", "does not exist"), ("folder", "is a folder"),
     ("file.txt/out.txt", "is not a folder")],
)  # fmt: skip
def test_output_in_an_unusable_place_is_one_line(
    tmp_path: Path, name: str, problem: str, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("keep me\n")
    clip = write_tone(tmp_path / "a.wav")
    output = tmp_path / name
    argv = ["transcribe", "--checkpoint", str(fake_checkpoint(tmp_path)), "--output", str(output)]
    assert main([*argv, str(clip)]) == 2
    assert one_error(capsys.readouterr().err, problem).startswith(f"error: --output {output}: ")
    assert (
        not (tmp_path / "missing").exists() and (tmp_path / "file.txt").read_text() == "keep me\n"
    )


def dev_full() -> Path:
    path = Path("/dev/full")
    if not path.exists():
        pytest.skip("no /dev/full here")
    return path


@pytest.mark.slow
def test_output_that_cannot_be_written_is_one_line(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    full = dev_full()  # opens, then every flush fails with ENOSPC
    clip = yes_clip(commands_dir)
    for fmt in ("text", "csv"):
        argv = ["transcribe", "--checkpoint", str(checkpoint), "--output", str(full)]
        assert main([*argv, "--format", fmt, str(clip)]) == 2
        one_error(capsys.readouterr().err, f"--output {full}: cannot write", "No space left")

    argv = ["explain", "--checkpoint", str(checkpoint), str(clip)]
    assert main([*argv, "--out", str(tmp_path / "e.png"), "--json", str(full)]) == 2
    one_error(capsys.readouterr().err, f"--json {full}: cannot write", "No space left")
    assert main([*argv, "--out", str(full)]) == 2
    one_error(capsys.readouterr().err, f"--out {full}: cannot write", "No space left")


def test_explain_and_evaluate_refuse_unusable_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clip = write_tone(tmp_path / "a.wav")
    data = clip.read_bytes()
    ckpt = str(fake_checkpoint(tmp_path))
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("keep me\n")
    explain = ["explain", "--checkpoint", ckpt, str(clip)]
    cases = [
        ([*explain, "--out", str(tmp_path / "folder")], "--out", "is a folder"),
        ([*explain, "--out", str(tmp_path / "file.txt" / "e.png")], "--out", "is not a folder"),
        ([*explain, "--out", str(clip)], "--out", "is the input"),
        ([*explain, "--json", str(clip)], "--json", "is the input"),
        ([*explain, "--json", ckpt], "--json", "is the input"),
        ([*explain, "--out", str(tmp_path / "e"), "--json", str(tmp_path / "e")], "--json",
         "the same file as --out"),
        (["evaluate", "--checkpoint", ckpt, str(tmp_path), "--out", str(tmp_path / "file.txt")],
         "--out", "is not a folder"),
    ]  # fmt: skip
    for argv, option, problem in cases:
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert one_error(err, problem).startswith(f"error: {option} ")
    assert clip.read_bytes() == data and (tmp_path / "file.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.wav",
        "file.txt",
        "folder",
        "model.ckpt",
    ]


@pytest.mark.slow
def test_explain_writes_exactly_the_name_it_reports(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "plots" / "gates"  # no .png: matplotlib wrote gates.png and we said gates
    argv = ["explain", "--checkpoint", str(checkpoint), str(yes_clip(commands_dir))]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"wrote {out}\n" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["gates"]


# ---------------------------------------------------------------------------- file names (4)

HOSTILE_NAMES = ["comma,name.wav", 'quote"name.wav', "new\nline.wav", "cr\rname.wav",
                 "\x1b[31mred\x1b[0m.wav", "tab\tname.wav", "c1\x9bname.wav"]  # fmt: skip


@pytest.fixture
def hostile_folder(commands_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for name in HOSTILE_NAMES:
        shutil.copy(yes_clip(commands_dir), folder / name)
    return folder


@pytest.mark.slow
def test_csv_rows_read_back_to_the_exact_paths(
    checkpoint: Path, hostile_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["transcribe", "--checkpoint", str(checkpoint), "--format", "csv"]
    assert main([*argv, str(hostile_folder)]) == 0
    rows = list(csv.reader(capsys.readouterr().out.splitlines(keepends=True)))
    assert rows[0] == ["path", "label", "score", "start_s", "end_s"]
    assert sorted(row[0] for row in rows[1:]) == sorted(
        str(hostile_folder / n) for n in HOSTILE_NAMES
    )
    assert all(len(row) == 5 and row[1] in LABELS for row in rows[1:])

    out = tmp_path / "labels.csv"  # the same through --output
    assert main([*argv, "--output", str(out), str(hostile_folder)]) == 0
    with open(out, newline="") as fh:
        assert list(csv.reader(fh)) == rows


@pytest.mark.slow
def test_names_and_labels_cannot_drive_the_terminal(
    checkpoint: Path, hostile_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = hostile_folder / "gone\n\x1b]0;owned\x07.wav"
    argv = ["transcribe", "--checkpoint", str(checkpoint), str(hostile_folder), str(missing)]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert no_control_characters(out) and no_control_characters(err)
    lines = out.splitlines()
    assert len(lines) == len(HOSTILE_NAMES)  # one line per file, however it is named
    assert f"{hostile_folder}/\\x1b[31mred\\x1b[0m.wav\t" in out
    assert f"{hostile_folder}/new\\nline.wav\t" in out
    assert f"{hostile_folder}/tab\\tname.wav\t" in out
    assert one_error(err, "file not found") == (
        f"error: {hostile_folder}/gone\\n\\x1b]0;owned\\x07.wav: file not found"
    )

    event = Event(label="\x1b[2Jyes\n\x85", start_s=0.0, end_s=1.0, score=0.9, time_s=1.0)
    line = format_event(event, as_json=False)
    assert no_control_characters(line) and "\n" not in line and "\\x1b[2Jyes\\n\\x85" in line
    table = Report(["_silence_", "ye\x1bs\n"], np.eye(2, dtype=np.int64)).table()
    assert no_control_characters(table) and len(table.splitlines()) == 3


def test_printable_keeps_text_and_escapes_controls() -> None:
    assert printable("größe_日本語 a\\b.wav") == "größe_日本語 a\\b.wav"
    assert printable("a\nb\r\t\x1b[1m\x7f\x9b\u2028\u202e") == (
        "a\\nb\\r\\t\\x1b[1m\\x7f\\x9b\\u2028\\u202e"
    )
    assert printable(os.fsdecode(b"bad\xff.wav")) == "bad\\xff.wav"
    assert str(AudioError("x\x1b[2J\ny.wav", "bad\x1b[0m")) == "x\\x1b[2J\\ny.wav: bad\\x1b[0m"


@pytest.mark.slow
def test_name_that_is_not_utf8_reads_as_audio(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "latin1"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9_yes.wav")  # Latin-1 bytes, not UTF-8
    with open(raw, "wb") as fh:
        fh.write(yes_clip(commands_dir).read_bytes())
    name = os.fsdecode(raw)
    assert audio.info(name).frames > 0 and audio.load_audio(name).size > 0
    assert sum(b.size for b in audio.iter_blocks(name)) == audio.load_audio(name).size

    for inputs in ([name], [str(folder)]):
        assert main(["transcribe", "--checkpoint", str(checkpoint), *inputs]) == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"{folder}/caf\\xe9_yes.wav\t"), (out, err)
        assert error_lines(err) == []
    assert main(["transcribe", "--checkpoint", str(checkpoint), "--json", name]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == name

    result = run_cli("transcribe", "--checkpoint", str(checkpoint), "--format", "csv", raw)
    assert result.returncode == 0, result.stderr
    [row] = list(csv.reader(result.stdout.splitlines()))[1:]
    assert row[0] == name  # the name's own bytes


# -------------------------------------------------------------------------- closed pipe (5)


def closed_pipe_run(*args: str) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose reader is already gone (as `| head -1` ends up)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return run_cli(*args, stdout=write)
    finally:
        os.close(write)


@pytest.mark.slow
def test_closed_pipe_ends_quietly(checkpoint: Path, commands_dir: Path) -> None:
    clips = [str(p) for w in WORDS for p in sorted((commands_dir / w).glob("*.wav"))[:2]]
    for args in (
        ("info", "--checkpoint", str(checkpoint), "--json"),
        ("transcribe", "--checkpoint", str(checkpoint), *clips),
    ):
        result = closed_pipe_run(*args)
        assert result.returncode == 141, result.stderr
        assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
        assert "BrokenPipe" not in result.stderr


# ----------------------------------------------------------------- truncated and damaged (6, 7)


def cut_wav(tmp_path: Path, keep_frames: int, name: str = "cut.wav") -> Path:
    full = write_tone(tmp_path / f"full_{name}")
    cut = tmp_path / name
    cut.write_bytes(full.read_bytes()[: 44 + 2 * keep_frames + 1])  # and half a sample
    return cut


@pytest.mark.parametrize("keep", [4000, 0])
def test_truncated_wav_is_an_error_everywhere(tmp_path: Path, keep: int) -> None:
    # README: a truncated file gets an error; it used to be labelled from what was present.
    cut = cut_wav(tmp_path, keep)
    problem = f"truncated file (header says 16000 frames, {keep} present)"
    for read in (audio.info, audio.load_audio, lambda p: list(audio.iter_blocks(p))):
        with pytest.raises(AudioError) as err:
            read(cut)
        assert str(err.value) == f"{cut}: {problem}"


def test_wav_of_unknown_length_is_not_truncated(tmp_path: Path) -> None:
    """Streaming writers leave the data size at 0xFFFFFFFF: a placeholder, not a promise."""
    path = write_tone(tmp_path / "streamed.wav")
    data = bytearray(path.read_bytes())
    assert data[36:40] == b"data"
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    assert audio.load_audio(path).size == SAMPLE_RATE


@pytest.mark.slow
def test_truncated_wav_on_the_command_line(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cut = cut_wav(tmp_path, 4000)
    good = yes_clip(commands_dir)
    assert main(["transcribe", "--checkpoint", str(checkpoint), str(cut), str(good)]) == 1
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(good)]
    one_error(err, f"{cut}: truncated file (header says 16000 frames, 4000 present)")
    assert main(["stream", "--checkpoint", str(checkpoint), "--input", str(cut)]) == 2
    one_error(capsys.readouterr().err, f"{cut}: truncated file")


@pytest.mark.parametrize("peak", [1e30, 3e4])
def test_float_samples_too_loud_to_be_audio_are_an_error(tmp_path: Path, peak: float) -> None:
    """Finite float32 samples whose power overflows gave NaN scores (and NaN losses in
    training); int16 values stored as floats are past the limit too."""
    path = tmp_path / "loud.wav"
    wave = np.full(SAMPLE_RATE, peak, np.float32)
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    for read in (audio.load_audio, lambda p: list(audio.iter_blocks(p))):
        with pytest.raises(AudioError) as err:
            read(path)
        assert str(err.value).startswith(f"{path}: samples reach ")
        assert "audio is in [-1, 1]" in str(err.value) and "\n" not in str(err.value)
    sf.write(path, wave / peak * 2.0, SAMPLE_RATE, subtype="FLOAT")  # clipped, still audio
    assert audio.load_audio(path).max() == pytest.approx(2.0)


def wav_at_rate(path: Path, rate: int, frames: int) -> Path:
    sf.write(path, np.zeros(frames), rate, subtype="PCM_16")
    return path


@pytest.mark.parametrize("rate", [1, 999, 384001])
def test_implausible_sample_rate_is_refused(tmp_path: Path, rate: int) -> None:
    path = wav_at_rate(tmp_path / "odd.wav", rate, 16000)
    for read in (audio.info, audio.load_audio, lambda p: list(audio.iter_blocks(p))):
        with pytest.raises(AudioError) as err:
            read(path)
        assert str(err.value) == f"{path}: unsupported sample rate {rate} Hz"


def test_plausible_rates_still_read(tmp_path: Path) -> None:
    for rate in (1000, 384000):
        assert audio.info(wav_at_rate(tmp_path / f"{rate}.wav", rate, 100)).sample_rate == rate


@pytest.mark.slow
def test_one_hertz_header_is_an_error_not_a_long_recording(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A 32 KB file claiming 1 Hz was a 4.4-hour recording, scanned for minutes. This one is
    # 100 s at 1 Hz, so the old behaviour fails the test quickly instead.
    path = wav_at_rate(tmp_path / "one_hz.wav", 1, 100)
    assert main(["transcribe", "--checkpoint", str(checkpoint), str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    one_error(err, f"{path}: unsupported sample rate 1 Hz")


# ------------------------------------------------------------------------------ evaluate (8)


@pytest.mark.slow
def test_evaluate_exits_1_on_failed_clips_and_never_decodes_recordings(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    import speech_gru.analysis.evaluate as evaluate

    folder = tmp_path / "test"
    for word in WORDS:
        (folder / word).mkdir(parents=True)
        for clip in sorted((commands_dir / word).glob("*.wav"))[:2]:
            shutil.copy(clip, folder / word / clip.name)
    (folder / "yes" / "broken.wav").write_bytes(b"RIFF....WAVE")
    long = write_tone(folder / "no" / "recording.wav", seconds=30.0)
    decoded: list[Path] = []
    real = evaluate.load_audio
    monkeypatch.setattr(evaluate, "load_audio", lambda p: decoded.append(Path(p)) or real(p))

    assert (
        main(["evaluate", "--checkpoint", str(checkpoint), str(folder), "--out", str(tmp_path)])
        == 1
    )
    out, err = capsys.readouterr()
    lines = error_lines(err)
    assert len(lines) == 2
    assert lines[0].startswith(f"error: {folder / 'no' / 'recording.wav'}: too long for a clip")
    assert lines[1].startswith(f"error: {folder / 'yes' / 'broken.wav'}: ")
    assert long not in decoded and len(decoded) == 2 * len(WORDS)
    assert out.splitlines()[-2].startswith("accuracy: ")  # the report is still printed
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["total"] == 2 * len(WORDS) and len(report["errors"]) == 2


# ------------------------------------------------------------------------------- threads (9)


@pytest.mark.slow
def test_transcribe_sets_threads_before_loading_the_model(
    checkpoint: Path, commands_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    import torch

    import speech_gru.runtime.factory as factory

    seen: list[int] = []
    real = factory.load_model
    monkeypatch.setattr(
        factory, "load_model", lambda p, *a: seen.append(torch.get_num_threads()) or real(p, *a)
    )
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        argv = ["transcribe", "--checkpoint", str(checkpoint), str(yes_clip(commands_dir))]
        assert main(argv) == 0  # default: one thread, as stream
        assert main([*argv, "--threads", "2"]) == 0
        assert seen == [1, 2]  # an ONNX session takes the count it finds at load
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
