"""Shared fixtures: a synthetic spoken-commands folder and a model trained on it.

Both are built once per test session in a temporary folder: espeak-ng speaks the words,
and the recipe trains a small BiGRU on them through its real command line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

RECIPE_CONF = Path(__file__).resolve().parents[1] / "recipes" / "speech_commands" / "conf"
WORDS = ("yes", "no", "up", "down")
UNKNOWN_WORDS = ("cat", "dog", "tree")
LABELS = ["_silence_", "_unknown_", *WORDS]


def require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install sets it up)")


def synthesize(factory: pytest.TempPathFactory, name: str, speakers: int, seed: int) -> Path:
    require_espeak()
    from tools.make_synthetic_commands import make_dataset

    root = factory.mktemp(name)
    make_dataset(root, words=WORDS, unknown_words=UNKNOWN_WORDS, speakers=speakers, seed=seed)
    return root


@pytest.fixture(scope="session")
def commands_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Speech-Commands-layout folder: 4 commands, 3 other words, 48 synthetic speakers."""
    return synthesize(tmp_path_factory, "commands", speakers=48, seed=0)


@pytest.fixture(scope="session")
def unseen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Other synthetic speakers (another seed), for scoring on voices never trained on."""
    return synthesize(tmp_path_factory, "unseen", speakers=6, seed=7)


def train_args(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Recipe arguments for a small, quick model on the synthetic folder."""
    return [
        "fit",
        "--config", str(RECIPE_CONF / "demo.yaml"),
        "--data.root", str(data_root),
        "--data.labels", json.dumps(LABELS),  # quoted: YAML reads a bare yes/no as a bool
        "--data.num_workers", "0",
        "--data.unknown_fraction", "null",
        "--run_dir", str(run_dir),
        "--data.testing_percent", "20",
        "--model.hidden_size", "64",
        "--model.num_layers", "1",
        "--model.lr", "0.005",
        "--model.lr_scaling", "none",  # 0.005 at this batch of 32, as tuned
        "--model.n_fft", "640",  # 20 ms frames, as folder.yaml: half the GRU steps
        "--model.hop_length", "320",
        "--trainer.max_epochs", "25",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, commands_dir: Path) -> Path:
    """Run folder of a recipe ``fit`` (then test) on the synthetic folder."""
    from speech_gru.training import main

    run_dir = tmp_path_factory.mktemp("run") / "demo"
    main(train_args(commands_dir, run_dir))
    return run_dir


@pytest.fixture(scope="session")
def checkpoint(trained_run: Path) -> Path:
    return trained_run / "checkpoints" / "best.ckpt"


def recipe_args(subcommand: str, data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Recipe arguments (for a subprocess) for a small model on the synthetic folder, one
    worker-less CPU; the progress bar and model summary stay on, as users run them."""
    return [
        subcommand,
        "--config", str(RECIPE_CONF / "demo.yaml"),
        "--data.root", str(data_root),
        "--data.labels", json.dumps(LABELS),
        "--data.num_workers", "0",
        "--data.unknown_fraction", "null",
        "--data.testing_percent", "20",
        "--run_dir", str(run_dir),
        "--model.hidden_size", "32",
        "--model.num_layers", "1",
        "--trainer.accelerator", "cpu",
        *extra,
    ]  # fmt: skip
