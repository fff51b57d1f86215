"""The training recipe end to end: LightningCLI fit -> test, run folder, checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from speech_gru.train.lit import KeywordSpotter
from speech_gru.train.training import main
from tests.helpers import LABELS, RECIPE_CONF, train_args


@pytest.mark.slow
def test_fit_then_test_writes_the_run_folder(trained_run: Path) -> None:
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    logs = trained_run / "logs" / "version_0"
    assert (logs / "metrics.csv").read_text().startswith("epoch,step")
    config = yaml.safe_load((logs / "config.yaml").read_text())
    assert config["data"]["labels"] == LABELS
    assert (trained_run / "labels.txt").read_text().split() == LABELS
    info = json.loads((trained_run / "run_info.json").read_text())
    assert info["speech_gru_version"] and info["world_size"] == 1 and info["seed"] == 0
    assert info["git_commit"] is None or len(info["git_commit"].split("-")[0]) == 40
    results = json.loads((trained_run / "results.json").read_text())
    assert results["checkpoint"].endswith("best.ckpt")
    # Held-out synthetic speakers, 6 classes (chance ~0.17): the recipe really learns.
    assert results["test/acc"] > 0.6


@pytest.mark.slow
def test_checkpoint_alone_restores_model_and_labels(checkpoint: Path) -> None:
    module = KeywordSpotter.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    assert module.labels == LABELS
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["test_metrics"]["test/acc"] > 0.6
    wave = torch.randn(2, 16000) * 0.05
    again = KeywordSpotter.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        probs = module(wave)
        torch.testing.assert_close(probs, again(wave))
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))


@pytest.mark.slow
def test_fit_refuses_to_overwrite_a_runs_checkpoints(
    trained_run: Path, commands_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    best = trained_run / "checkpoints" / "best.ckpt"
    before = best.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(train_args(commands_dir, trained_run, "--trainer.max_epochs", "1"))
    assert "already holds checkpoints" in str(exit_info.value.code)
    assert "--ckpt_path last" in str(exit_info.value.code)
    assert best.read_bytes() == before


def official_layout(commands_dir: Path, root: Path) -> Path:
    """An official-archive cache (v0.02 + canonical test archive) made of synthetic clips."""
    shutil.copytree(commands_dir, root / "v0.02")
    test = root / "test_v0.02"
    for word in ("yes", "no"):
        shutil.copytree(commands_dir / word, test / word)
    (test / "_unknown_").mkdir()
    for path in sorted((commands_dir / "cat").glob("*.wav"))[:4]:
        shutil.copy(path, test / "_unknown_" / f"cat_{path.name}.wav")
    (test / "_silence_").mkdir()
    for i, path in enumerate(sorted((commands_dir / "_background_noise_").glob("*.wav"))):
        shutil.copy(path, test / "_silence_" / f"{i}.wav")
    return root


@pytest.mark.parametrize("conf", ["v2_12.yaml", "folder.yaml", "demo.yaml", "small.yaml"])
def test_every_config_runs_a_fast_dev_run(conf: str, commands_dir: Path, tmp_path: Path) -> None:
    data_root = commands_dir
    extra = []
    configs = ["--config", str(RECIPE_CONF / conf)]
    if conf == "v2_12.yaml":
        data_root = official_layout(commands_dir, tmp_path / "cache")
        extra = ["--data.download", "false"]
    if conf == "small.yaml":  # an overlay: after a recipe config
        configs = ["--config", str(RECIPE_CONF / "folder.yaml"), *configs]
    cli = main(
        [
            "fit",
            *configs,
            "--data.root", str(data_root),
            "--data.num_workers", "0",
            "--run_dir", str(tmp_path / "run"),
            "--trainer.accelerator", "cpu",
            "--trainer.fast_dev_run", "true",
            "--trainer.enable_progress_bar", "false",
            *extra,
        ]
    )  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.labels == cli.datamodule.labels
    if conf == "small.yaml":
        assert cli.model.model.config.hidden_size == 128
        assert cli.model.model.frontend.n_fft == 480
    if conf == "v2_12.yaml":  # the 12-class test set is the canonical test archive
        test_files = {c.path for c in cli.datamodule.datasets["testing"].clips}
        assert all(p.is_relative_to(data_root / "test_v0.02") for p in test_files)


def test_early_stopping_ends_fit_when_val_acc_stalls(commands_dir: Path, tmp_path: Path) -> None:
    # With a zero learning rate val/acc never improves: patience 2 stops after 3 epochs.
    cli = main(
        train_args(
            commands_dir, tmp_path / "run",
            "--model.lr", "0", "--trainer.max_epochs", "10",
            "--early_stopping_patience", "2", "--test_after_fit", "false",
        )
    )  # fmt: skip
    assert cli.trainer.current_epoch == 3 and cli.trainer.should_stop
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
