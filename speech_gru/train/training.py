"""The recipe's command line: LightningCLI over KeywordSpotter and SpeechCommandsDataModule.

Config flows YAML -> LightningCLI -> typed ``__init__`` arguments; devices, nodes,
strategy and precision are plain Trainer settings, so Lightning, torchrun and SLURM all
launch the same command. This module adds only what every recipe run needs:

* a run folder (``--run_dir``): ``checkpoints/{best,last}.ckpt``, ``labels.txt``,
  ``run_info.json`` (package version, git commit, world size), ``results.json``, and per
  invocation ``logs/version_N/{config.yaml,metrics.csv}``;
* checkpoints written atomically (a temporary file in the same folder, fsync, rename), a
  fresh ``last.ckpt`` every ``--last_every_n_steps`` steps and when the process is asked
  to stop (SIGTERM, or SIGUSR1 as SLURM sends before pre-emption), so
  ``fit --ckpt_path last`` continues exactly where it stopped;
* the label list linked from the data into the model, the per-device batch size into the
  learning-rate scaling, and ``seed_everything`` into the data's seed;
* early stopping on ``val/acc`` (``--early_stopping_patience N``, off by default);
* one run at a time in a run folder (a lock held by global rank 0, naming its PID), a
  refusal to start a new ``fit`` over an earlier run's checkpoints or to resume one that
  has none, and the removal of temporary files left by a save that was killed;
* checkpoints read from local files only, weights-only (never unpickling code);
* a test of the best checkpoint right after ``fit``;
* one-line errors, not tracebacks, for data and checkpoint set-up problems;
* training you can watch: ``curves.png`` (loss and accuracy per epoch, from every
  ``metrics.csv`` of the run) at the end of ``fit``, one plain line per epoch on stderr
  when it is not a terminal (a log file; ``EpochLines``), and TensorBoard event files in
  ``tensorboard/version_N`` beside the CSV logs when the ``tensorboard`` package is
  installed (``--tensorboard``).
"""

from __future__ import annotations

import csv
import fcntl
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from speech_gru import __version__
from speech_gru.core.atomic import TEMP_SUFFIX, write_atomic
from speech_gru.runtime.checkpoint import (
    CheckpointError,
    read_checkpoint,
    record_test_metrics,
    stored_hyper_parameters,
    write_checkpoint,
)
from speech_gru.train.data import DataError, SpeechCommandsDataModule
from speech_gru.train.download import DownloadError
from speech_gru.train.lit import KeywordSpotter, init_checkpoint_config

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O through ``speech_gru.runtime.checkpoint``: saves atomically;
    loads local files only, weights-only.

    Every checkpoint the trainer reads (``--ckpt_path`` of fit, validate, test) comes
    through here. Lightning would fetch a URL and unpickle it in full, which runs any code
    the file carries; a recipe checkpoint holds only tensors and plain data, so it loads
    weights-only, and a remote one must be downloaded (and so chosen) first.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        write_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return read_checkpoint(path, map_location)


class LastCheckpoint(Callback):
    """Keeps ``last.ckpt`` fresh during training and saves it when asked to stop.

    At every epoch end and every ``every_n_steps`` optimizer steps the full training state
    (weights, optimizer, scheduler, loop progress, loader position) goes to ``last.ckpt``.

    SIGTERM and SIGUSR1 (what SLURM sends before pre-emption) only note the request. At
    the end of every training batch all ranks agree, in one collective at that fixed
    point, whether any rank was asked; if so every rank sets Lightning's SIGTERM flag, so
    they all stop after that same batch, and this callback writes ``last.ckpt``. Lightning's
    own handler broadcasts from inside the signal handler, which pairs with whatever
    collective another rank is in at that instant and can hang a DDP run for good.

    Args:
        dirpath: checkpoint folder.
        every_n_steps: steps between saves; 0 saves only at epoch ends and on signals.
    """

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGUSR1") if hasattr(signal, n))

    def __init__(self, dirpath: str | os.PathLike, every_n_steps: int = 0) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self._previous: dict[int, Any] = {}
        self._stop_requested = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_requested = False
        if _main_thread():  # after Lightning installed its handlers for the run
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._request_stop)

    def _request_stop(self, signum: int, frame: Any) -> None:
        self._stop_requested = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.path, weights_only=False)
        if trainer.strategy.reduce_boolean_decision(self._stop_requested, all=False):
            # Every rank, after the same batch: the loop raises SIGTERMException next.
            trainer._signal_connector.received_sigterm = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After validation, so the best-model state is current. The full state (optimizer,
        # loops, callbacks), said explicitly: Lightning logs a line per save otherwise.
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path, weights_only=False)

    def _restore_handlers(self) -> None:
        if _main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._previous = {}


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


CURVE_KEYS = ("train/loss", "val/loss", "train/acc", "val/acc")
"""The per-epoch values of ``EpochLines`` and ``curves.png``, in that order."""


class EpochLines(Callback):
    """One plain line per training epoch, for log files, where a progress bar is noise::

        epoch 3/30  train loss 0.8123  val loss 0.7441  train acc 0.7310  val acc 0.7702  41.2 s

    Printed by global rank 0 when ``stream`` (default: stderr at that moment) is not a
    terminal; on a terminal the progress bar says it all and nothing is printed. Train loss
    is the mean over rank 0's batches, the accuracies those the LightningModule logs,
    seconds the epoch's wall time with its validation; a value not logged shows as ``-``.

    Every rank reads the logged metrics at the same points, as the epoch-end checkpoint
    does, whether it prints or not. The module logs ``train/acc`` in its own
    ``on_train_epoch_end``, which Lightning calls after this callback's, so an epoch's
    line is printed when the next epoch starts, or when training ends.

    Args:
        stream: where to print (None: ``sys.stderr`` when printing).
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self._pending: dict[str, Any] | None = None
        self._start = time.monotonic()
        self._loss_sum: torch.Tensor | float = 0.0
        self._batches = 0
        self._val: dict[str, float] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_pending(trainer)
        self._start = time.monotonic()
        self._loss_sum, self._batches, self._val = 0.0, 0, {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):  # summed on the device: no sync per batch
            # Lightning divides the loss it returns by the gradient accumulation
            self._loss_sum = self._loss_sum + loss.detach() * trainer.accumulate_grad_batches
            self._batches += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val = _metrics(trainer, "val/loss", "val/acc")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = float(self._loss_sum) / self._batches if self._batches else None
        self._pending = {
            "epoch": trainer.current_epoch + 1,
            "seconds": time.monotonic() - self._start,
            "train/loss": loss,
            **self._val,
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_pending(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._print_pending(trainer)

    def _print_pending(self, trainer: L.Trainer) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        pending.update(_metrics(trainer, "train/acc"))
        stream = self.stream or sys.stderr
        if trainer.is_global_zero and not _is_terminal(stream):
            print(epoch_line(pending, trainer.max_epochs), file=stream, flush=True)


def _metrics(trainer: L.Trainer, *keys: str) -> dict[str, float]:
    logged = trainer.callback_metrics
    return {key: float(logged[key]) for key in keys if key in logged}


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def epoch_line(values: Mapping[str, Any], max_epochs: int | None = None) -> str:
    """``epoch 3/30  train loss 0.8123  val loss 0.7441  train acc 0.7310  val acc
    0.7702  41.2 s`` from {``epoch`` (from 1), ``seconds``, ``train/loss``, ``val/loss``,
    ``train/acc``, ``val/acc``}; a missing or None value shows as ``-``."""

    def shown(key: str) -> str:
        value = values.get(key)
        return "-" if value is None else f"{value:.4f}"

    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    parts = [f"epoch {values['epoch']}{total}"]
    parts += [f"{key.replace('/', ' ')} {shown(key)}" for key in CURVE_KEYS]
    parts.append(f"{values.get('seconds', 0.0):.1f} s")
    return "  ".join(parts)


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
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path


def tensorboard_logger(run_dir: Path, wanted: bool | None) -> dict | None:
    """The TensorBoard logger's config (``run_dir/tensorboard/version_N``), or None.

    Args:
        wanted: True: required (a one-line error with the install command when the
            package is missing); None: when ``tensorboard`` is installed; False: never.
    """
    installed = importlib.util.find_spec("tensorboard") is not None
    if wanted and not installed:
        sys.exit(
            "error: --tensorboard true needs the tensorboard package: "
            "pip install 'speech-gru[tensorboard]'"
        )
    if not (installed if wanted is None else wanted):
        return None
    return {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": str(run_dir), "name": "tensorboard", "default_hp_metric": False},
    }


class SpeechGruCLI(LightningCLI):
    """LightningCLI with the project's run folder, checkpoints and fit-then-test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock: IO[str] | None = None
        try:
            super().__init__(*args, **kwargs)  # parses and runs the subcommand
        finally:  # the run folder is free again, also for a later run in this process
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _parse_ckpt_path(self) -> None:
        # LightningCLI's own step, through the one checkpoint reader: before any hook runs,
        # --ckpt_path's hyper-parameters set the model's config. A file it refuses (or one
        # of the flat form) ends as one line, as the trainer's own read would.
        subcommand = self.config.get("subcommand")
        self._adopt_init_from(subcommand)
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not Path(path).is_file():
            return
        hparams = stored_hyper_parameters(path, read_checkpoint(path))
        if hparams:
            model = {subcommand: {"model": hparams}}
            self.config = self.parser.parse_object(model, self.config)

    def _adopt_init_from(self, subcommand: str | None) -> None:
        # --model.init_from: the model is built with that checkpoint's architecture and
        # features, so its encoder fits; the labels (and the head) stay this run's.
        path = self.config[subcommand].get("model", {}).get("init_from") if subcommand else None
        if not path:
            return
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: checkpoint file not found (model.init_from)")
        adopted = init_checkpoint_config(path)
        if adopted:
            model = {subcommand: {"model": adopted}}
            self.config = self.parser.parse_object(model, self.config)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=str, default="runs/speech_gru", help="run folder")
        parser.add_argument(
            "--test_after_fit", type=bool, default=True, help="test the best checkpoint after fit"
        )
        parser.add_argument(
            "--last_every_n_steps",
            type=int,
            default=100,
            help="save checkpoints/last.ckpt every N training steps (0: epoch ends only)",
        )
        parser.add_argument(
            "--early_stopping_patience",
            type=int,
            default=0,
            help="stop fit when val/acc has not improved for N epochs (0: run every epoch)",
        )
        parser.add_argument(
            "--tensorboard",
            type=bool | None,
            default=None,
            help="with the default trainer.logger, also log to TensorBoard in "
            "run_dir/tensorboard (default: when the tensorboard package is installed; "
            "true: require it; false: never)",
        )
        parser.link_arguments("data.label_names", "model.labels", apply_on="instantiate")
        parser.link_arguments("data.batch_size", "model.batch_size")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": False,  # LastCheckpoint keeps last.ckpt
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.link_arguments("run_dir", "checkpoint.dirpath", compute_fn=checkpoint_dir)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = Path(config.run_dir)
        config.trainer.default_root_dir = str(run_dir)
        if config.seed_everything is not False:  # one seed fixes the whole run
            config.data.seed = int(config.seed_everything)
        if config.trainer.logger in (None, True):
            # One folder per invocation (logs/version_N): a resumed fit or a later test
            # adds its own metrics.csv and config.yaml instead of replacing the first.
            # The CSV logger first: its folder gets config.yaml (trainer.log_dir).
            csv_logger = {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run_dir), "name": "logs"},
            }
            tensorboard = tensorboard_logger(run_dir, config.tensorboard)
            config.trainer.logger = [csv_logger, tensorboard] if tensorboard else csv_logger

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self.config[self.subcommand] if self.subcommand else self.config
        configured = self._get(self.config_init, "trainer", default={}).get("plugins") or []
        plugins = list(configured) if isinstance(configured, list) else [configured]
        plugins.append(AtomicCheckpointIO())
        if SLURMEnvironment.detect():
            # Pre-emption is handled here (SIGUSR1 -> last.ckpt); the batch script requeues.
            plugins.append(SLURMEnvironment(auto_requeue=False))
        callbacks = [
            LastCheckpoint(checkpoint_dir(config.run_dir), config.last_every_n_steps),
            EpochLines(),
        ]
        patience = config.early_stopping_patience
        if patience > 0:
            callbacks.append(EarlyStopping(monitor="val/acc", mode="max", patience=patience))
        trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        trainer.callbacks.extend(callbacks)
        return trainer

    def _hold_run_dir(self) -> None:
        """Take the run folder for this run (global rank 0), check it holds what the
        command needs, and clear what a killed save left behind: once the lock is held,
        no other run can be writing there."""
        if not self.trainer.is_global_zero:
            return
        config = self.config[self.subcommand]
        run_dir = Path(config.run_dir)
        self._lock = lock_run_dir(run_dir)
        checkpoints = Path(checkpoint_dir(str(run_dir)))
        if self.subcommand == "fit" and config.get("ckpt_path") is None:
            existing = sorted(checkpoints.glob("*.ckpt"))
            if existing:
                sys.exit(
                    f"error: {run_dir} already holds checkpoints ({existing[0].name}); "
                    "resume it with --ckpt_path last or choose another --run_dir"
                )
        if config.get("ckpt_path") == "last" and not (checkpoints / "last.ckpt").is_file():
            sys.exit(
                f"error: {checkpoints / 'last.ckpt'}: not found, nothing to resume; run "
                "without --ckpt_path last to start afresh"
            )
        stale = list(checkpoints.glob(f".*{TEMP_SUFFIX}"))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.warning("%s: removed %d temporary files of a killed save", run_dir, len(stale))

    def before_fit(self) -> None:
        self._hold_run_dir()
        self.datamodule.setup("fit")  # checks the data, counts clips: before any training
        if self.trainer.is_global_zero:
            write_run_info(Path(self.config["fit"].run_dir), self.trainer, self.datamodule)

    def before_validate(self) -> None:
        self._hold_run_dir()

    def before_test(self) -> None:
        self._hold_run_dir()

    def before_predict(self) -> None:
        self._hold_run_dir()

    def after_fit(self) -> None:
        config = self.config["fit"]
        self._draw_curves(Path(config.run_dir))
        if not config.test_after_fit or self.trainer.fast_dev_run:
            return
        callback = self.trainer.checkpoint_callback
        best = callback.best_model_path if callback else ""
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        self._report(results, Path(config.run_dir) / "results.json", best)

    def _draw_curves(self, run_dir: Path) -> None:
        """``run_dir/curves.png`` from every ``metrics.csv`` of the CSV logger's folder (a
        resumed fit's earlier invocations too), when there is one."""
        loggers = [log for log in self.trainer.loggers if isinstance(log, CSVLogger)]
        if not loggers or not self.trainer.is_global_zero:
            return

        def version(path: Path) -> int:
            number = path.parent.name.removeprefix("version_")
            return int(number) if number.isdigit() else -1

        files = sorted(Path(loggers[0].root_dir).glob("*/metrics.csv"), key=version)
        curves = epoch_curves(files)
        if any(curves.values()):
            plot_curves(curves, run_dir / "curves.png")

    def after_test(self) -> None:
        config = self.config["test"]
        results = self.trainer.callback_metrics
        metrics = [{k: v for k, v in results.items() if k.startswith("test/")}]
        self._report(metrics, Path(config.run_dir) / "test_results.json", config.ckpt_path)

    def _report(self, results: list[dict], path: Path, checkpoint: str | None) -> None:
        if not results or not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in results[0].items()}
        record = {"checkpoint": checkpoint or "", **metrics}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
        if checkpoint and path.name == "results.json":
            record_test_metrics(Path(checkpoint), metrics)
        print(f"test accuracy: {metrics.get('test/acc', float('nan')):.4f}  ({checkpoint})")


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


def main(args: list[str] | None = None) -> SpeechGruCLI:
    """Entry point of ``recipes/speech_commands/train.py``; returns the finished CLI.

    A run stopped by SIGTERM or SIGUSR1 exits with ``128 + signal`` after saving
    ``last.ckpt``, with a one-line message saying how to resume.
    """
    torch.set_float32_matmul_precision("high")
    try:
        return SpeechGruCLI(
            KeywordSpotter,
            SpeechCommandsDataModule,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (DataError, DownloadError, CheckpointError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    except SIGTERMException:
        print(
            "stopped by a signal; last.ckpt saved, resume with --ckpt_path last",
            file=sys.stderr,
        )
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":  # python -m speech_gru.train.training fit ... (as recipes/.../train.py)
    main()
