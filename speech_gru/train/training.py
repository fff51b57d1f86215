"""The recipe's command line: LightningCLI over KeywordSpotter and SpeechCommandsDataModule.

Config flows YAML -> LightningCLI -> typed ``__init__`` arguments; devices, nodes,
strategy and precision are plain Trainer settings, so Lightning, torchrun and SLURM all
launch the same command. ``SpeechGruCLI`` adds only what every recipe run needs:

* the run folder (``--run_dir``; ``speech_gru.train.run_folder``): held by one run at a
  time, ``run_info.json`` before ``fit``, ``results.json`` and ``curves.png`` after;
* the trainer's checkpoint I/O and callbacks (``speech_gru.train.callbacks``): atomic
  checkpoints, read from local files only and weights-only, a fresh ``last.ckpt`` every
  ``--last_every_n_steps`` steps and on SIGTERM/SIGUSR1, one plain line per epoch in a
  log file; early stopping on ``val/acc`` (``--early_stopping_patience N``, off by default);
* the label list linked from the data into the model, the per-device batch size into the
  learning-rate scaling, the model's window (``model.window_s``) into the data's clip
  length, and ``seed_everything`` into the data's seed;
* ``--ckpt_path``'s and ``--model.init_from``'s model settings read through the one
  checkpoint reader (``speech_gru.runtime.checkpoint``), so the model is built to fit them;
* a test of the best checkpoint right after ``fit``;
* one-line errors, not tracebacks, for data and checkpoint set-up problems;
* TensorBoard event files in ``tensorboard/version_N`` beside the CSV logs when the
  ``tensorboard`` package is installed (``--tensorboard``).
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import sys
import warnings
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from speech_gru.core.model import check_window_s
from speech_gru.runtime.bundled import bundled_model
from speech_gru.runtime.checkpoint import (
    CheckpointError,
    ModelLoadError,
    read_checkpoint,
    stored_hyper_parameters,
)
from speech_gru.train.callbacks import (
    AtomicCheckpointIO,
    EpochLines,
    LastCheckpoint,
    number_epochs_from_one,
)
from speech_gru.train.data import DataError, SpeechCommandsDataModule
from speech_gru.train.download import DownloadError
from speech_gru.train.lit import KeywordSpotter, init_checkpoint_config
from speech_gru.train.run_folder import (
    checkpoint_dir,
    draw_curves,
    hold_run_dir,
    write_results,
    write_run_info,
)


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


class SettingError(Exception):
    """A recipe setting that cannot make a run (``model.window_s`` out of range); one line."""


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
        if not Path(path).is_file():  # a bundled model's name (keywords12) stands for its file
            try:
                path = str(bundled_model(str(path)).path)
            except ModelLoadError:
                raise CheckpointError(
                    f"{path}: checkpoint file not found, nor a bundled model (model.init_from)"
                ) from None
            self.config = self.parser.parse_object(
                {subcommand: {"model": {"init_from": path}}}, self.config
            )
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
        # One setting, the model's: every clip is cut to the window the model scores.
        parser.link_arguments("model.window_s", "data.window_s")
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
        try:  # one line before anything is built, rather than a traceback from the model
            check_window_s(config.model.window_s, "model.window_s")
        except ValueError as err:
            raise SettingError(str(err)) from None
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
        number_epochs_from_one(trainer)
        return trainer

    def _hold_run_dir(self) -> None:
        if self.trainer.is_global_zero:
            config = self.config[self.subcommand]
            run_dir, ckpt_path = Path(config.run_dir), config.get("ckpt_path")
            self._lock = hold_run_dir(run_dir, self.subcommand, ckpt_path)

    def before_fit(self) -> None:
        self._hold_run_dir()
        self.datamodule.setup("fit")  # checks the data, counts clips: before any training
        if not self.datamodule.validates:
            self._fit_without_validation()
        if self.trainer.is_global_zero:
            write_run_info(Path(self.config["fit"].run_dir), self.trainer, self.datamodule)

    def _fit_without_validation(self) -> None:
        """No speaker held out for validation (``data.validation_percent 0``: the model
        trained on every speaker once cross-validation has measured the recipe): no
        validation loop, and ``best.ckpt`` is the last epoch's weights."""
        if self.config["fit"].early_stopping_patience > 0:
            raise SettingError(
                "early_stopping_patience needs validation speakers; with "
                "data.validation_percent 0 every epoch runs"
            )
        self.trainer.limit_val_batches = 0
        self.trainer.num_sanity_val_steps = 0
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.monitor == "val/acc":
            callback.monitor = None  # keep the latest epoch as best.ckpt
        if self.trainer.is_global_zero:
            print(
                "no validation speakers (data.validation_percent 0): every epoch runs and "
                "best.ckpt is the last one",
                file=sys.stderr,
            )

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
        if not self.datamodule.tests:
            if self.trainer.is_global_zero:
                note = "no test speakers (data.testing_percent 0): no test after fit"
                print(note, file=sys.stderr)
            return
        callback = self.trainer.checkpoint_callback
        best = callback.best_model_path if callback else ""
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        self._report(results, Path(config.run_dir) / "results.json", best)

    def _draw_curves(self, run_dir: Path) -> None:
        loggers = [log for log in self.trainer.loggers if isinstance(log, CSVLogger)]
        if loggers and self.trainer.is_global_zero:
            draw_curves(run_dir, Path(loggers[0].root_dir))

    def after_test(self) -> None:
        config = self.config["test"]
        results = self.trainer.callback_metrics
        metrics = [{k: v for k, v in results.items() if k.startswith("test/")}]
        self._report(metrics, Path(config.run_dir) / "test_results.json", config.ckpt_path)

    def _report(self, results: list[dict], path: Path, checkpoint: str | None) -> None:
        if not results or not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in results[0].items()}
        write_results(path, checkpoint, metrics)
        print(f"test accuracy: {metrics.get('test/acc', float('nan')):.4f}  ({checkpoint})")


LIGHTNING_CHATTER = (
    "💡 Tip",  # advertisements for Lightning's cloud services
    "GPU available: False",
    "TPU available: False",
    "HPU available: False",
    "Loading `train_dataloader` to estimate",
)
"""Start-up lines of Lightning that say nothing about this run; every other line stays."""


class QuietLightning(logging.Filter):
    """Drops ``LIGHTNING_CHATTER`` from Lightning's own log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_CHATTER)


def quiet_lightning() -> None:
    """Leave Lightning's chatter and its own deprecation warnings out of a run's output."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        chatty = logging.getLogger(name)
        if not any(isinstance(f, QuietLightning) for f in chatty.filters):
            chatty.addFilter(QuietLightning())
    # Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; nothing to act on.
    warnings.filterwarnings("ignore", r".isinstance.treespec, LeafSpec.. is deprecated")


def main(args: list[str] | None = None) -> SpeechGruCLI:
    """Entry point of ``recipes/speech_commands/train.py``; returns the finished CLI.

    A run stopped by SIGTERM or SIGUSR1 exits with ``128 + signal`` after saving
    ``last.ckpt``, with a one-line message saying how to resume.
    """
    torch.set_float32_matmul_precision("high")
    quiet_lightning()
    try:
        return SpeechGruCLI(
            KeywordSpotter,
            SpeechCommandsDataModule,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (DataError, DownloadError, CheckpointError, SettingError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    except SIGTERMException:
        print(
            "stopped by a signal; last.ckpt saved, resume with --ckpt_path last",
            file=sys.stderr,
        )
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":  # python -m speech_gru.train.training fit ... (as recipes/.../train.py)
    main()
