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
* a refusal to start a new ``fit`` over an earlier run's checkpoints;
* a test of the best checkpoint right after ``fit``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from speech_gru import __version__
from speech_gru.data import SpeechCommandsDataModule
from speech_gru.lit import KeywordSpotter


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written file under ``path``.

    The data goes to a temporary file in the same folder, is flushed to disk, and is then
    renamed over ``path`` (an atomic step on POSIX file systems).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O through ``atomic_save``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        atomic_save(checkpoint, path)


class LastCheckpoint(Callback):
    """Keeps ``last.ckpt`` fresh during training and saves it when asked to stop.

    At every epoch end and every ``every_n_steps`` optimizer steps the full training state
    (weights, optimizer, scheduler, loop progress, loader position) goes to ``last.ckpt``.
    SIGUSR1 is turned into SIGTERM, which Lightning handles by stopping every rank after
    the current batch; this callback then writes ``last.ckpt`` before the process exits.

    Args:
        dirpath: checkpoint folder.
        every_n_steps: steps between saves; 0 saves only at epoch ends and on signals.
    """

    def __init__(self, dirpath: str | os.PathLike, every_n_steps: int = 0) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self._previous: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if hasattr(signal, "SIGUSR1") and _main_thread():
            self._previous = signal.signal(signal.SIGUSR1, _usr1_as_sigterm)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After validation, so the best-model state is current. The full state (optimizer,
        # loops, callbacks), said explicitly: Lightning logs a line per save otherwise.
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handler()
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path, weights_only=False)

    def _restore_handler(self) -> None:
        if self._previous is not None and _main_thread():
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _usr1_as_sigterm(signum: int, frame: Any) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class SpeechGruCLI(LightningCLI):
    """LightningCLI with the project's run folder, checkpoints and fit-then-test."""

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
            config.trainer.logger = {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run_dir), "name": "logs"},
            }
        if self.subcommand == "fit" and config.get("ckpt_path") is None:
            existing = sorted(Path(checkpoint_dir(str(run_dir))).glob("*.ckpt"))
            if existing:
                sys.exit(
                    f"error: {run_dir} already holds checkpoints ({existing[0].name}); "
                    "resume it with --ckpt_path last or choose another --run_dir"
                )

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self.config[self.subcommand] if self.subcommand else self.config
        configured = self._get(self.config_init, "trainer", default={}).get("plugins") or []
        plugins = list(configured) if isinstance(configured, list) else [configured]
        plugins.append(AtomicCheckpointIO())
        if SLURMEnvironment.detect():
            # Pre-emption is handled here (SIGUSR1 -> last.ckpt); the batch script requeues.
            plugins.append(SLURMEnvironment(auto_requeue=False))
        callbacks = [LastCheckpoint(checkpoint_dir(config.run_dir), config.last_every_n_steps)]
        patience = config.early_stopping_patience
        if patience > 0:
            callbacks.append(EarlyStopping(monitor="val/acc", mode="max", patience=patience))
        trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        trainer.callbacks.extend(callbacks)
        return trainer

    def before_fit(self) -> None:
        if self.trainer.is_global_zero:
            write_run_info(Path(self.config["fit"].run_dir), self.trainer, self.datamodule)

    def after_fit(self) -> None:
        config = self.config["fit"]
        if not config.test_after_fit or self.trainer.fast_dev_run:
            return
        callback = self.trainer.checkpoint_callback
        best = callback.best_model_path if callback else ""
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        self._report(results, Path(config.run_dir) / "results.json", best)

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
        "clips": {split: len(ds) for split, ds in datamodule.datasets.items()},
    }
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")


def record_test_metrics(path: Path, metrics: dict[str, float]) -> None:
    """Store test metrics inside a checkpoint (for ``speech-gru info``), atomically."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["test_metrics"] = metrics
    atomic_save(checkpoint, path)


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
    except SIGTERMException:
        print(
            "stopped by a signal; last.ckpt saved, resume with --ckpt_path last",
            file=sys.stderr,
        )
        sys.exit(128 + signal.SIGTERM)
