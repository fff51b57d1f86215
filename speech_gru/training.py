"""The recipe's command line: LightningCLI over KeywordSpotter and SpeechCommandsDataModule.

Config flows YAML -> LightningCLI -> typed ``__init__`` arguments. This module adds only
what every recipe run needs: a run folder (``--run_dir``) holding the CSV log, the resolved
config and the checkpoints (``best.ckpt`` by validation accuracy, ``last.ckpt``); the label
list linked from the data into the model; a refusal to overwrite an earlier run's
checkpoints; and a test of the best checkpoint right after ``fit``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from speech_gru.data import SpeechCommandsDataModule
from speech_gru.lit import KeywordSpotter


class SpeechGruCLI(LightningCLI):
    """LightningCLI with the project's run folder, checkpoints and fit-then-test."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=str, default="runs/speech_gru", help="run folder")
        parser.add_argument(
            "--test_after_fit", type=bool, default=True, help="test the best checkpoint after fit"
        )
        parser.link_arguments("data.label_names", "model.labels", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.link_arguments("run_dir", "checkpoint.dirpath", compute_fn=checkpoint_dir)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = Path(config.run_dir)
        config.trainer.default_root_dir = str(run_dir)
        if config.trainer.logger in (None, True):
            config.trainer.logger = {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run_dir), "name": "", "version": ""},
            }
        if self.subcommand != "fit":  # keep the training config.yaml as it was
            self.save_config_kwargs["config_filename"] = f"config_{self.subcommand}.yaml"
        if self.subcommand == "fit" and config.get("ckpt_path") is None:
            existing = sorted(Path(checkpoint_dir(str(run_dir))).glob("*.ckpt"))
            if existing:
                sys.exit(
                    f"error: {run_dir} already holds checkpoints ({existing[0].name}); "
                    "resume it with --ckpt_path last or choose another --run_dir"
                )

    def after_fit(self) -> None:
        config = self.config["fit"]
        if not config.test_after_fit or self.trainer.fast_dev_run:
            return
        callback = self.trainer.checkpoint_callback
        best = callback.best_model_path if callback else ""
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        if not results or not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in results[0].items()}
        run_dir = Path(config.run_dir)
        (run_dir / "results.json").write_text(
            json.dumps({"checkpoint": best, **metrics}, indent=2) + "\n"
        )
        if best:
            record_test_metrics(Path(best), metrics)
        print(f"test accuracy: {metrics.get('test/acc', float('nan')):.4f}  ({best})")


def checkpoint_dir(run_dir: str) -> str:
    return str(Path(run_dir) / "checkpoints")


def record_test_metrics(path: Path, metrics: dict[str, float]) -> None:
    """Store test metrics inside a checkpoint (for ``speech-gru info``), atomically."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["test_metrics"] = metrics
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


def main(args: list[str] | None = None) -> SpeechGruCLI:
    """Entry point of ``recipes/speech_commands/train.py``; returns the finished CLI."""
    torch.set_float32_matmul_precision("high")
    return SpeechGruCLI(
        KeywordSpotter,
        SpeechCommandsDataModule,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
