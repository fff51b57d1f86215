"""The live view of `speech-gru stream` (speech_gru/cli/live.py) and how the command ends: a
frame drawn without a terminal, the detector's ``on_chunk`` hook, the view on a
pseudo-terminal and not on a pipe, SIGTERM and a closed pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from speech_gru.cli.live import LiveView, level_dbfs, render_frame
from speech_gru.cli.main import main
from speech_gru.core.audio import write_wav
from speech_gru.runtime.detector import StreamingDetector
from tests.helpers import TINY_LABELS, tiny_checkpoint

SR = 16000
# 00:00:01.00  yes        0.28  [0.00-1.00 s]
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d\d  \S+ +\d\.\d\d  \[\d+\.\d\d-\d+\.\d\d s\]$")
# Events whatever the untrained model says: the lowest threshold, no averaging or refractory.
EVENTS_ALWAYS = ["--threshold", "0.01", "--average", "0", "--refractory", "0"]


def text_of(renderable) -> str:  # noqa: ANN001 - a rich renderable
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_frame_shows_level_scores_and_threshold() -> None:
    text = text_of(render_frame(-23.44, {"no": 0.1, "yes": 0.82, "up": 0.05}, 0.7))
    lines = text.splitlines()
    assert "input" in lines[0] and "-23.4 dBFS" in lines[0]
    rows = [line.split()[:2] for line in lines[1:4]]
    assert rows == [["yes", "0.82"], ["no", "0.10"], ["up", "0.05"]]  # highest first
    assert "threshold 0.70" in text
    assert lines[1].count("|") == 1  # the threshold marked on each score's bar

    top = text_of(render_frame(-6.0, {f"w{i}": i / 10 for i in range(9)}, 0.5, top=3))
    assert [line.split()[0] for line in top.splitlines()[1:4]] == ["w8", "w7", "w6"]


def test_frame_before_any_window_and_with_per_keyword_thresholds() -> None:
    text = text_of(render_frame(-np.inf, {}, {"yes": 0.6, "no": 0.8}))
    assert "-inf dBFS" in text and "waiting for the first second" in text
    assert "thresholds 0.60-0.80 per keyword" in text


def test_level_is_rms_relative_to_full_scale() -> None:
    t = np.arange(SR) / SR
    assert level_dbfs(np.sin(2 * np.pi * 440 * t)) == pytest.approx(-3.01, abs=0.01)
    assert level_dbfs(0.1 * np.sin(2 * np.pi * 440 * t)) == pytest.approx(-23.01, abs=0.01)
    assert level_dbfs(np.zeros(160)) == -np.inf
    assert level_dbfs(np.zeros(0)) == -np.inf


def level_scorer(windows: np.ndarray) -> np.ndarray:
    """A stand-in model: ``yes`` scores the share of the window at 0.1, ``_silence_`` the
    rest."""
    yes = np.isclose(windows, 0.1).mean(axis=1)
    return np.stack([1 - yes, 0 * yes, yes, 0 * yes], axis=1)  # (B, 4) in TINY_LABELS order


def test_on_chunk_hook_sees_each_chunk_and_the_latest_scores_without_changing_events() -> None:
    wave = np.concatenate([np.zeros(SR), np.full(SR, 0.1), np.zeros(2 * SR)]).astype(np.float32)
    chunks = [wave[i : i + 1600] for i in range(0, wave.size, 1600)]
    plain = StreamingDetector(level_scorer, TINY_LABELS).run(chunks)
    seen: list[tuple[int, np.ndarray | None]] = []
    detector = StreamingDetector(level_scorer, TINY_LABELS, keep_trace=True)
    hooked = list(detector.events(chunks, on_chunk=lambda c, s: seen.append((c.size, s))))
    assert hooked == plain and [e.label for e in plain] == ["yes"]
    assert [size for size, _ in seen] == [c.size for c in chunks]
    assert all(s is None for _, s in seen[:9])  # before the first full second
    assert seen[9][1] is not None
    np.testing.assert_array_equal(seen[-1][1], detector.trace[-1])

    view = LiveView(TINY_LABELS, StreamingDetector(level_scorer, TINY_LABELS).thresholds)
    view.on_chunk(chunks[15], seen[15][1])
    frame = text_of(view.frame())
    assert "-20.0 dBFS" in frame and "yes" in frame and "_silence_" not in frame
    assert "threshold 0.70" in frame


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny checkpoint and 3 s of noise to stream."""
    root = tmp_path_factory.mktemp("live")
    noise = 0.1 * np.random.default_rng(0).standard_normal(3 * SR)
    write_wav(root / "noise.wav", noise)
    return tiny_checkpoint(root / "tiny.ckpt"), root / "noise.wav"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stream_draws_the_view_on_a_terminal_and_events_above_it(
    tiny: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, wav = tiny
    args = ["stream", "--checkpoint", str(checkpoint), "--input", str(wav), *EVENTS_ALWAYS]
    monkeypatch.setenv("TERM", "xterm")
    shown = {}
    for view in (True, False):
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stdout", terminal)
        assert main(args if view else [*args, "--no-view"]) == 0
        shown[view] = terminal.getvalue()
    assert "dBFS" in shown[True] and "threshold 0.01" in shown[True]
    assert "\x1b" not in shown[False]  # --no-view: as piped
    assert event_lines(shown[True]) == shown[False].splitlines()
    assert len(shown[False].splitlines()) >= 5


def screen_lines(screen: str) -> list[str]:
    """What was written to a terminal as lines of text: cut at line ends and line
    erasures (the view's redraws), colours and cursor moves left out."""
    pieces = re.split(r"[\r\n]|\x1b\[2K", screen)
    return [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", piece) for piece in pieces]


def event_lines(screen: str) -> list[str]:
    """The event lines in what was written to a terminal, between the view's redraws."""
    return [line for line in screen_lines(screen) if EVENT_LINE.match(line)]


def stream_command(checkpoint: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "speech_gru.cli", "stream", "--checkpoint", str(checkpoint),
            *args]  # fmt: skip


def quiet_env() -> dict[str, str]:
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100", "OMP_NUM_THREADS": "1"}
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    return env


@pytest.mark.slow
def test_stream_on_a_pseudo_terminal_shows_the_view_and_the_events(
    tiny: tuple[Path, Path],
) -> None:
    checkpoint, wav = tiny
    master, slave = pty.openpty()
    command = stream_command(checkpoint, "--input", str(wav), "--realtime", *EVENTS_ALWAYS)
    process = subprocess.Popen(command, stdout=slave, stderr=subprocess.PIPE, env=quiet_env())
    os.close(slave)
    screen = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        screen += data
    os.close(master)
    stderr = process.communicate(timeout=60)[1].decode()
    assert process.returncode == 0, stderr
    text = screen.decode()
    assert "dBFS" in text and "threshold 0.01" in text and "\x1b[" in text
    rows = [line.split()[:2] for line in screen_lines(text) if line.startswith(("yes ", "no "))]
    assert rows and all(re.fullmatch(r"0\.\d\d", score) for _, score in rows)  # scores shown
    events = event_lines(text)
    assert len(events) >= 5
    assert f"summary: 3.0 s of audio, {len(events)} events" in stderr


@pytest.mark.slow
def test_piped_stream_prints_the_events_only(tiny: tuple[Path, Path]) -> None:
    checkpoint, wav = tiny
    command = stream_command(checkpoint, "--input", str(wav), *EVENTS_ALWAYS)
    done = subprocess.run(command, capture_output=True, env=quiet_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) >= 5 and all(EVENT_LINE.match(line) for line in lines)
    assert f"summary: 3.0 s of audio, {len(lines)} events" in done.stderr.decode()
    assert b"\x1b" not in done.stdout + done.stderr


@pytest.mark.slow
def test_sigterm_prints_the_summary_and_exits_cleanly(tiny: tuple[Path, Path]) -> None:
    checkpoint, wav = tiny
    command = stream_command(checkpoint, "--input", str(wav), "--realtime", *EVENTS_ALWAYS)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=quiet_env()
    )
    assert EVENT_LINE.match(process.stdout.readline().decode().strip())  # streaming, at 1 s
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    stderr = err.decode()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = stderr.splitlines()[-1]
    assert re.fullmatch(r"stopped: \d\.\d s of audio, \d+ events \(.*\)", summary), stderr
    assert float(summary.split()[1]) < 2.9  # stopped before the 3 s file ended


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(tiny: tuple[Path, Path]) -> None:
    checkpoint, wav = tiny
    command = stream_command(checkpoint, "--input", str(wav), "--realtime", *EVENTS_ALWAYS)
    shell = shlex.join(command) + ' | head -1; echo "exit ${PIPESTATUS[0]}" >&2'
    done = subprocess.run(["bash", "-c", shell], capture_output=True, env=quiet_env(), timeout=60)
    stderr = done.stderr.decode()
    assert len(done.stdout.decode().splitlines()) == 1
    assert stderr.splitlines()[-1] == "exit 141"  # 128 + SIGPIPE, as a shell reports it
    for noise in ("Traceback", "BrokenPipeError", "Exception ignored", "summary:"):
        assert noise not in stderr
