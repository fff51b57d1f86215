"""The run folder (``--run_dir``) and what the recipe writes there besides checkpoints.

A run folder holds ``checkpoints/{best,last}.ckpt``, ``labels.txt``, ``run_info.json``
(package version, git commit, world size), ``results.json`` (the best checkpoint's test
after ``fit``) or ``test_results.json``, ``curves.png`` (loss and accuracy per epoch, from
every ``metrics.csv`` of the run), and per invocation ``logs/version_N/{config.yaml,
metrics.csv}``. One run at a time uses it: a lock held by global rank 0, naming its PID
(``hold_run_dir``), which also refuses a new ``fit`` over an earlier run's checkpoints or a
resume of one that has none, and removes the temporary files a killed save left.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

import lightning as L
import torch

from speech_gru import __version__
from speech_gru.core.atomic import TEMP_SUFFIX
from speech_gru.core.plots import save_figure
from speech_gru.runtime.checkpoint import record_test_metrics
from speech_gru.train.callbacks import CURVE_KEYS
from speech_gru.train.data import SpeechCommandsDataModule

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir: str) -> str:
    return str(Path(run_dir) / "checkpoints")


def lock_run_dir(run_dir: Path) -> IO[str]:
    """Lock ``run_dir/.lock`` for as long as the returned file stays open (the process's
    life: the kernel releases it even on ``kill -9``); the file holds the owner's PID.

    Raises:
        SystemExit: another process holds the folder; the message names its PID.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / ".lock", "a+")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        sys.exit(
            f"error: {run_dir} is in use by another run (PID {holder}); wait for it to end "
            "or choose another --run_dir"
        )
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def git_commit() -> str | None:
    """The source's git commit (with ``-dirty`` if modified), or None outside a checkout."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def write_run_info(run_dir: Path, trainer: L.Trainer, datamodule: SpeechCommandsDataModule) -> None:
    """``labels.txt`` and ``run_info.json``: what is needed to know how a run was made."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "labels.txt").write_text("".join(f"{label}\n" for label in datamodule.labels))
    info = {
        "speech_gru_version": __version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "command": sys.argv,
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "devices_per_node": trainer.num_devices,
        "precision": str(trainer.precision),
        "seed": datamodule.hparams.seed,
        "clips": datamodule.clip_counts,
        "speakers": datamodule.speaker_counts(),
    }
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")


def hold_run_dir(run_dir: Path, command: str, ckpt_path: str | None) -> IO[str]:
    """Take the run folder for this run (global rank 0 calls it), check it holds what the
    command needs, and clear what a killed save left behind: once the lock is held, no
    other run can be writing there.

    Args:
        run_dir: the run folder.
        command: ``fit``, ``validate``, ``test`` or ``predict``.
        ckpt_path: the command's ``--ckpt_path`` (None: not given).

    Returns:
        The lock (see ``lock_run_dir``): keep it open for the run.

    Raises:
        SystemExit: the folder is in use, a new ``fit`` would overwrite an earlier run's
            checkpoints, or ``--ckpt_path last`` has nothing to resume; one line.
    """
    lock = lock_run_dir(run_dir)
    checkpoints = Path(checkpoint_dir(str(run_dir)))
    if command == "fit" and ckpt_path is None:
        existing = sorted(checkpoints.glob("*.ckpt"))
        if existing:
            lock.close()
            sys.exit(
                f"error: {run_dir} already holds checkpoints ({existing[0].name}); "
                "resume it with --ckpt_path last or choose another --run_dir"
            )
    if ckpt_path == "last" and not (checkpoints / "last.ckpt").is_file():
        lock.close()
        sys.exit(
            f"error: {checkpoints / 'last.ckpt'}: not found, nothing to resume; run "
            "without --ckpt_path last to start afresh"
        )
    stale = list(checkpoints.glob(f".*{TEMP_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.warning("%s: removed %d temporary files of a killed save", run_dir, len(stale))
    return lock


def write_results(path: Path, checkpoint: str | None, metrics: dict[str, float]) -> None:
    """``results.json`` or ``test_results.json``: the tested checkpoint and its metrics;
    the metrics of ``fit``'s test (``results.json``) go into that checkpoint too."""
    record = {"checkpoint": checkpoint or "", **metrics}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    if checkpoint and path.name == "results.json":
        record_test_metrics(Path(checkpoint), metrics)


def draw_curves(run_dir: Path, logs: Path) -> None:
    """``run_dir/curves.png`` from every ``logs/version_N/metrics.csv`` (a resumed fit's
    earlier invocations too), in version order; nothing when no epoch was logged."""

    def version(path: Path) -> int:
        number = path.parent.name.removeprefix("version_")
        return int(number) if number.isdigit() else -1

    curves = epoch_curves(sorted(logs.glob("*/metrics.csv"), key=version))
    if any(curves.values()):
        plot_curves(curves, run_dir / "curves.png")


def epoch_curves(metrics_files: Iterable[Path]) -> dict[str, dict[int, float]]:
    """Per-epoch values of ``CURVE_KEYS`` from CSVLogger ``metrics.csv`` files.

    ``train/loss`` is logged per step: an epoch's value is the mean of its logged steps
    (every ``trainer.log_every_n_steps``; none in an epoch shorter than that); the others
    are logged once per epoch (their last value counts). Files are read in order, and a
    later one's epochs replace an earlier one's: the logs of a resumed fit redo the epoch
    that was cut short.

    Returns:
        {key: {epoch (from 1): value}}, each key present (possibly empty).
    """
    curves: dict[str, dict[int, float]] = {key: {} for key in CURVE_KEYS}
    for path in metrics_files:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        found: dict[str, dict[int, list[float]]] = {key: {} for key in CURVE_KEYS}
        for row in rows:
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"])) + 1
            for key in CURVE_KEYS:
                if row.get(key):
                    found[key].setdefault(epoch, []).append(float(row[key]))
        for key, epochs in found.items():
            for epoch, values in epochs.items():
                mean = key == "train/loss"
                curves[key][epoch] = sum(values) / len(values) if mean else values[-1]
    return curves


def plot_curves(curves: Mapping[str, Mapping[int, float]], path: Path) -> Path:
    """Draw train and validation loss and accuracy per epoch (``epoch_curves``) to a PNG,
    written atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, quantity in zip(fig.subplots(1, 2), ("loss", "acc"), strict=True):
        for stage, style in (("train", "o-"), ("val", "s--")):
            points = sorted(curves.get(f"{stage}/{quantity}", {}).items())
            if points:
                ax.plot(*zip(*points, strict=True), style, label=stage, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if quantity == "acc" else "loss")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    return save_figure(fig, path, dpi=100)
