"""Training attacked: every hostile case found against the recipe, kept so none comes back.

* Two DDP processes with the recipe's default progress bar and callbacks run fit,
  validation, checkpointing and test over several epochs without deadlocking, and stop
  cleanly on SIGTERM.
* A checkpoint that would run code when unpickled, local or served from a URL, is
  refused and its code never runs.
* One run per run folder (a second gets the holder's PID); ``--ckpt_path last`` with
  nothing to resume is an error; a killed save's temporary files are cleaned up.
* Unreadable clips are left out with a warning naming each; a file name that is not
  UTF-8 trains like any other; an empty data folder or a split without clips is a
  one-line error, not a run that "succeeds" with no model.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech_gru.train.clips import ClipDataset
from speech_gru.train.corpus import speaker_of, which_set
from speech_gru.train.data import DataError, SpeechCommandsDataModule
from speech_gru.train.training import main
from tests.helpers import LABELS, recipe_args, train_args

TRAIN = Path(__file__).resolve().parents[1] / "recipes" / "speech_commands" / "train.py"


def ddp_args(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """The recipe's ``fit`` on two CPU processes, as users run it."""
    return [
        str(TRAIN),
        *recipe_args("fit", data_root, run_dir, "--trainer.devices", "2"),
        *("--trainer.strategy", "ddp", *extra),
    ]


ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_ddp_with_the_progress_bar_runs_every_epoch_and_tests(
    commands_dir: Path, tmp_path: Path
) -> None:
    # Deadlocked at the first epoch end: rank 0's progress bar gathered a metric while
    # rank 1 waited at the checkpoint barrier. A hang fails here by the timeout.
    run_dir = tmp_path / "ddp"
    args = ddp_args(commands_dir, run_dir, "--trainer.max_epochs", "3")
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=420
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Epoch 3/3" in done.stderr + done.stdout  # the bar was drawn, to the last epoch
    metrics = (run_dir / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in metrics[1:]]
    assert sum(bool(r["val/acc"]) for r in rows) == 3
    assert sum(bool(r["train/acc"]) for r in rows) == 3
    results = json.loads((run_dir / "results.json").read_text())
    n_test = len(datamodule(commands_dir).datasets["testing"])
    assert results["test/clips"] == n_test
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_stops_on_sigterm_with_the_progress_bar_and_resumes(
    commands_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "ddp"
    common = ("--trainer.max_epochs", "40", "--last_every_n_steps", "2")
    process = subprocess.Popen(
        [sys.executable, *ddp_args(commands_dir, run_dir, *common)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "resume with --ckpt_path last" in err
    stopped = torch.load(last, weights_only=True)
    assert 1 <= stopped["epoch"] < 40

    resumed = subprocess.run(
        [sys.executable, *ddp_args(commands_dir, run_dir, *common, "--ckpt_path", "last",
                                   "--trainer.max_epochs", str(stopped["epoch"] + 2))],
        capture_output=True, text=True, env=ENV, timeout=420,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, weights_only=True)["epoch"] == stopped["epoch"] + 1
    assert (run_dir / "results.json").is_file()


def datamodule(root: Path, **kwargs: object) -> SpeechCommandsDataModule:
    options = {"labels": LABELS, "num_workers": 0, "unknown_fraction": None}
    dm = SpeechCommandsDataModule(
        root=str(root), version="folder", testing_percent=20, **{**options, **kwargs}
    )
    dm.setup()
    return dm


class Payload:
    """Unpickling this creates a marker file: code run from a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def evil_checkpoint(checkpoint: Path, path: Path, marker: Path) -> Path:
    state = torch.load(checkpoint, weights_only=True)
    state["payload"] = Payload(marker)
    torch.save(state, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A folder served over HTTP on 127.0.0.1; yields its base URL."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_resume_from_a_url_is_refused_and_runs_no_code(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, served: str
) -> None:
    marker = tmp_path / "code-ran"
    evil_checkpoint(checkpoint, tmp_path / "www" / "evil.ckpt", marker)
    run_dir = tmp_path / "run"
    url = f"{served}/evil.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        main(train_args(commands_dir, run_dir, "--ckpt_path", url))
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert url in message and "remote checkpoints are not loaded" in message
    assert not marker.exists()


@pytest.mark.slow
def test_a_local_checkpoint_carrying_code_is_refused(
    checkpoint: Path, commands_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    evil = evil_checkpoint(checkpoint, tmp_path / "evil.ckpt", marker)
    for subcommand in ("fit", "test"):
        args = train_args(commands_dir, tmp_path / subcommand, "--ckpt_path", str(evil))
        args[0] = subcommand
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        message = str(exit_info.value.code)
        assert message.startswith(f"error: {evil}: it holds objects other than"), message
        assert not marker.exists()


def test_resuming_a_run_folder_without_last_ckpt_is_an_error(
    commands_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "empty-run"
    with pytest.raises(SystemExit) as exit_info:
        main(train_args(commands_dir, run_dir, "--ckpt_path", "last"))
    assert "nothing to resume" in str(exit_info.value.code)
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_a_second_run_into_a_busy_run_folder_is_refused(commands_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "shared"
    first = subprocess.Popen(
        [sys.executable, str(TRAIN),
         *train_args(commands_dir, run_dir, "--trainer.max_epochs", "200")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        lock = run_dir / ".lock"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            started = (run_dir / "run_info.json").is_file()
            if started and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read()[-3000:]
        info = (run_dir / "run_info.json").read_text()
        with pytest.raises(SystemExit) as exit_info:
            main(train_args(commands_dir, run_dir, "--trainer.max_epochs", "1"))
        message = str(exit_info.value.code)
        assert f"in use by another run (PID {first.pid})" in message
        assert (run_dir / "run_info.json").read_text() == info  # the first run's, untouched
    finally:
        first.kill()  # kill -9: the kernel drops the lock with the process
        first.communicate(timeout=60)
    # The folder is free again for the one who resumes it.
    from speech_gru.train.run_folder import lock_run_dir

    handle = lock_run_dir(run_dir)
    assert lock.read_text().strip() == str(os.getpid())
    handle.close()


@pytest.mark.slow
def test_a_killed_saves_temporary_files_are_removed_on_resume(
    trained_run: Path, commands_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "resumed"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns(".lock"))
    stale = run_dir / "checkpoints" / ".last.ckpt.k9x2q1ab.tmp"
    stale.write_bytes(b"\0" * 4096)  # what kill -9 during a save leaves behind
    epochs = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 2
    main(train_args(commands_dir, run_dir, "--ckpt_path", "last",
                    "--trainer.max_epochs", str(epochs)))  # fmt: skip
    assert not stale.exists()
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


ODD_NAME = b"caf\xe9\xff_nohash_0.wav"
"""A clip's file name in Latin-1, not UTF-8."""


def training_speaker(word_dir: Path) -> str:
    """A speaker id (not yet in the folder) that the recipe's split puts in training."""
    for i in range(1000):
        speaker = f"bad{i:03d}"
        if which_set(speaker, 10, 20, "speech_gru") == "training":
            return speaker
    raise AssertionError("no training speaker found")


@pytest.fixture
def folder_with_bad_clips(commands_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the synthetic folder with a non-audio "clip" and one holding NaN samples
    (its header reads fine; decoding fails), both in the training split."""
    root = tmp_path / "data"
    shutil.copytree(commands_dir, root)
    speaker = training_speaker(root / "yes")
    garbage = root / "yes" / f"{speaker}_nohash_0.wav"
    garbage.write_bytes(b"this is not a wave file" * 100)
    nan = root / "no" / f"{speaker}_nohash_0.wav"
    sf.write(nan, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    # and a good clip whose name is not UTF-8, which trains like the others
    shutil.copyfile(sorted((root / "no").glob("*.wav"))[0], root / "no" / os.fsdecode(ODD_NAME))
    return root, garbage, nan


@pytest.mark.slow
def test_unreadable_clips_are_left_out_with_a_warning_each(
    folder_with_bad_clips: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, garbage, nan = folder_with_bad_clips
    run_dir = tmp_path / "run"
    args = train_args(root, run_dir, "--trainer.max_epochs", "2")
    done = subprocess.run(
        [sys.executable, str(TRAIN), *args], capture_output=True, text=True, env=ENV,
        timeout=420,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if str(garbage) in line and "not an audio file" in line]
    assert "training: leaving out 1 unreadable files" in done.stderr
    # The NaN clip passes the header check; reading it fails in the loader, every epoch,
    # and it is reported once (per process) and counted for nothing.
    assert len([line for line in lines if str(nan) in line]) == 1
    results = json.loads((run_dir / "results.json").read_text())  # trained, then tested
    assert results["test/clips"] == len(datamodule(root).datasets["testing"])


def test_a_clip_that_fails_to_decode_counts_for_nothing(
    folder_with_bad_clips: tuple[Path, Path, Path],
) -> None:
    root, _, nan = folder_with_bad_clips
    dm = datamodule(root)
    dataset: ClipDataset = dm.datasets["training"]
    index = next(i for i, c in enumerate(dataset.clips) if c.path == nan)
    wave, label = dataset[index]
    assert label == -1 and not wave.any()  # a padding item: no loss, no accuracy
    assert speaker_of(nan) not in {c.speaker for c in dm.datasets["testing"].clips}


def test_a_file_name_that_is_not_utf8_is_split_by_its_bytes(
    commands_dir: Path, tmp_path: Path
) -> None:
    """Such a name once stopped training (UnicodeEncodeError hashing the speaker): its
    speaker is hashed as the bytes on disk, so the clip trains like any other."""
    root = tmp_path / "data"
    shutil.copytree(commands_dir, root)
    odd = root / "yes" / os.fsdecode(ODD_NAME)
    shutil.copyfile(sorted((root / "yes").glob("*.wav"))[0], odd)
    dm = datamodule(root)
    placed = [s for s, ds in dm.datasets.items() if any(c.path == odd for c in ds.clips)]
    assert len(placed) == 1
    dataset: ClipDataset = dm.datasets[placed[0]]
    wave, label = dataset[next(i for i, c in enumerate(dataset.clips) if c.path == odd)]
    assert label == LABELS.index("yes") and wave.any()  # read and labelled like the others
    speaker = speaker_of(odd)
    digest = int(hashlib.sha1(b"salt" + ODD_NAME.split(b"_")[0]).hexdigest(), 16)
    percent = (digest % 2**27) * (100.0 / (2**27 - 1))
    expected = "validation" if percent < 10 else "testing" if percent < 30 else "training"
    assert which_set(speaker, 10, 20, "salt") == expected


def test_a_recording_in_a_word_folder_is_left_out_with_a_warning(
    commands_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A long file among the clips was read whole on every access (a 2-hour WAV: +0.9 GB
    each time) to train on its first second; its header shows it is a recording."""
    root = tmp_path / "data"
    shutil.copytree(commands_dir, root)
    speaker = training_speaker(root / "yes")
    long = root / "yes" / f"{speaker}_nohash_0.wav"
    sf.write(long, np.zeros(30 * 16000, np.int16), 16000, subtype="PCM_16")
    kept = root / "yes" / f"{speaker}_nohash_1.wav"  # long for a clip, still within bounds
    sf.write(kept, np.full(9 * 16000, 1000, np.int16), 16000, subtype="PCM_16")
    with caplog.at_level(logging.WARNING):
        dm = datamodule(root)
    paths = {c.path for ds in dm.datasets.values() for c in ds.clips}
    assert long not in paths and kept in paths
    about = [r.getMessage() for r in caplog.records if str(long) in r.getMessage()]
    assert len(about) == 1 and "\n" not in about[0]
    assert "30.0 s" in about[0] and "at most 10 s" in about[0]
    assert "training: leaving out 1 files longer than 10 s" in caplog.text


@pytest.mark.slow
def test_an_empty_data_folder_is_an_error_not_a_run(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, str(TRAIN), *train_args(empty, run_dir)],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"error: {empty}: no clips here (the layout: one sub-folder" in done.stderr
    assert not (run_dir / "checkpoints").exists()


def test_a_missing_data_folder_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exit_info:
        main(train_args(missing, tmp_path / "run"))
    assert str(exit_info.value.code) == f"error: {missing}: dataset folder not found (data.root)"


def test_a_split_without_clips_is_named(commands_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="in the validation split"):
        datamodule(commands_dir, validation_percent=0.0)
