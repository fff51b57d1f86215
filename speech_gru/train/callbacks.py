"""What the recipe's trainer is given besides its settings: checkpoint I/O through
``speech_gru.runtime.checkpoint`` and the callbacks of a run.

* ``AtomicCheckpointIO``: every checkpoint the trainer writes is written atomically (a
  temporary file in the same folder, fsync, rename), and every one it reads
  (``--ckpt_path`` of fit, validate, test) is a local file read weights-only;
* ``LastCheckpoint``: a fresh ``last.ckpt`` every ``--last_every_n_steps`` steps, at every
  epoch end, and when the process is asked to stop (SIGTERM, or SIGUSR1 as SLURM sends
  before pre-emption), with all ranks stopping after the same batch, so
  ``fit --ckpt_path last`` continues exactly where it stopped;
* ``EpochLines``: one plain line per epoch on stderr when it is not a terminal (a log
  file).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from speech_gru.runtime.checkpoint import read_checkpoint, write_checkpoint


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


def _epoch_text(trainer: L.Trainer, current_epoch: int) -> str:
    total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
    return f"Epoch {current_epoch + 1}{total}"


class EpochBar(TQDMProgressBar):
    """Lightning's plain progress bar, with epochs counted as the epoch lines count them:
    from 1 and out of ``max_epochs`` ("Epoch 8/30" where Lightning's bar says "Epoch 7")."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(_epoch_text(trainer, trainer.current_epoch))


class EpochRichBar(RichProgressBar):
    """Lightning's rich progress bar (its default where ``rich`` is installed), with epochs
    counted from 1 out of ``max_epochs`` ("Epoch 8/30" where it says "Epoch 7/29")."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = _epoch_text(self.trainer, current_epoch)
        return f"{text:{len(self.validation_description)}}"


def number_epochs_from_one(trainer: L.Trainer) -> None:
    """Put ``EpochRichBar``/``EpochBar`` in place of Lightning's default bar of exactly
    that class (a bar the user configured is kept), with the same settings."""
    for i, callback in enumerate(trainer.callbacks):
        if type(callback) is RichProgressBar:
            trainer.callbacks[i] = EpochRichBar(
                refresh_rate=callback.refresh_rate, leave=callback._leave,
                theme=callback.theme, console_kwargs=callback._console_kwargs,
            )  # fmt: skip
        elif type(callback) is TQDMProgressBar:
            trainer.callbacks[i] = EpochBar(
                refresh_rate=callback.refresh_rate, leave=callback._leave
            )


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
