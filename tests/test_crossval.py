"""Speaker-disjoint k-fold cross-validation: folds partition the speakers, and the driver
scores every test clip once and pools the folds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speech_gru.train.crossval import fold_command, main, pooled
from speech_gru.train.data import SpeechCommandsDataModule
from tests.helpers import LABELS, RECIPE_CONF


def fold_data(
    root: Path, folds: int, fold: int, validation: float = 10
) -> SpeechCommandsDataModule:
    dm = SpeechCommandsDataModule(
        root=str(root), version="folder", labels=LABELS, num_workers=0,
        unknown_fraction=None, folds=folds, fold=fold, validation_percent=validation,
    )  # fmt: skip
    dm.setup()
    return dm


def files(dm: SpeechCommandsDataModule, split: str) -> set[Path]:
    return {c.path for c in dm.datasets[split].clips if c.path is not None}


def test_folds_test_every_clip_once_on_speakers_never_trained_on(commands_dir: Path) -> None:
    modules = [fold_data(commands_dir, 3, fold) for fold in range(3)]
    tested = [files(dm, "testing") for dm in modules]
    everything = set().union(*(files(modules[0], split) for split in modules[0].datasets))
    assert set().union(*tested) == everything
    assert sum(len(t) for t in tested) == len(everything)  # each clip in one fold's test
    for dm in modules:
        speakers = {split: {c.speaker for c in dm.datasets[split].clips if c.path} for split in
                    dm.datasets}  # fmt: skip
        assert not speakers["testing"] & (speakers["training"] | speakers["validation"])
        assert speakers["validation"] and speakers["training"]


def test_fold_settings_are_checked() -> None:
    for folds, fold in ((1, 0), (3, 3), (3, -1)):
        with pytest.raises(ValueError, match="cross-validation"):
            SpeechCommandsDataModule(root="x", version="folder", folds=folds, fold=fold)


def test_pooled_accuracy_weights_folds_by_their_clips() -> None:
    summary = pooled([{"test/acc": 1.0, "test/clips": 30}, {"test/acc": 0.5, "test/clips": 10}])
    assert summary["accuracy"] == pytest.approx(35 / 40)
    assert summary["clips"] == 40
    assert summary["fold_mean"] == pytest.approx(0.75)


@pytest.mark.slow
def test_crossval_runs_each_fold_and_pools_them(
    commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = [
        "--config", str(RECIPE_CONF / "demo.yaml"),
        "--data.root", str(commands_dir),
        "--data.labels", json.dumps(LABELS),
        "--data.num_workers", "0",
        "--data.unknown_fraction", "null",
        "--data.validation_percent", "25",  # 24 speakers out of a fold: a few validate
        "--model.architecture.hidden_size", "32",
        "--model.architecture.num_layers", "1",
        "--trainer.max_epochs", "2",
    ]  # fmt: skip
    run_dir = tmp_path / "cv"
    assert main(["--folds", "2", "--run_dir", str(run_dir), "--", *recipe]) == 0
    summary = json.loads((run_dir / "crossval.json").read_text())
    expected = [len(fold_data(commands_dir, 2, f, 25).datasets["testing"]) for f in range(2)]
    assert [row["test/clips"] for row in summary["folds"]] == expected
    assert summary["clips"] == sum(expected)
    assert "cross-validated accuracy:" in capsys.readouterr().out
    # Run again: finished folds are kept, not retrained.
    stamps = [(run_dir / f"fold_{f}" / "results.json").stat().st_mtime_ns for f in range(2)]
    assert main(["--folds", "2", "--run_dir", str(run_dir), "--", *recipe]) == 0
    assert stamps == [(run_dir / f"fold_{f}" / "results.json").stat().st_mtime_ns for f in range(2)]


def test_fold_in_an_argument_becomes_each_folds_number(tmp_path: Path) -> None:
    args = ["--model.init_from", "runs/cv/fold_{fold}/checkpoints/best.ckpt", "--x", "y"]
    command = fold_command(args, 3, 2, tmp_path / "fold_2")
    assert "runs/cv/fold_2/checkpoints/best.ckpt" in command
    assert command[-6:] == [
        "--data.folds",
        "3",
        "--data.fold",
        "2",
        "--run_dir",
        str(tmp_path / "fold_2"),
    ]


@pytest.mark.slow
def test_the_final_model_trains_on_every_speaker(
    commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """After cross-validation, ``validation_percent 0 testing_percent 0`` fits on every
    clip: no validation loop, no test, and best.ckpt is the last epoch's weights."""
    from speech_gru.train.training import main as train
    from tests.helpers import train_args

    run = tmp_path / "all"
    everyone = ["--data.validation_percent", "0", "--data.testing_percent", "0"]
    args = train_args(commands_dir, run, *everyone, "--trainer.max_epochs", "2")
    train([*args, "--trainer.enable_progress_bar", "true"])  # the bar, as users run it
    err = capsys.readouterr().err
    assert "no validation speakers" in err and "no test speakers" in err
    info = json.loads((run / "run_info.json").read_text())
    assert set(info["clips"]["training"].values()) != {0}
    assert sum(info["clips"]["validation"].values()) == sum(info["clips"]["testing"].values()) == 0
    assert not (run / "results.json").exists()
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == last["epoch"] == 1
    for name, tensor in last["state_dict"].items():
        assert torch.equal(best["state_dict"][name], tensor), name

    with pytest.raises(SystemExit) as stopped:  # early stopping needs validation speakers
        train(
            train_args(commands_dir, tmp_path / "es", *everyone, "--early_stopping_patience", "2")
        )
    assert "early_stopping_patience needs validation speakers" in str(stopped.value.code)
