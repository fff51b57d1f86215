"""Shared fixtures (fixtures only: builders and constants are in tests/helpers.py): a
synthetic spoken-commands folder and a model trained on it.

Both are built once per test session in a temporary folder: espeak-ng speaks the words,
and the recipe trains a small BiGRU on them through its real command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import synthesize, train_args


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and far faster when other jobs hold cores);
    a module uses it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def commands_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Speech-Commands-layout folder: 4 commands, 3 other words, 48 synthetic speakers."""
    return synthesize(tmp_path_factory, "commands", speakers=48, seed=0)


@pytest.fixture(scope="session")
def unseen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Other synthetic speakers (another seed), for scoring on voices never trained on."""
    return synthesize(tmp_path_factory, "unseen", speakers=6, seed=7)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, commands_dir: Path) -> Path:
    """Run folder of a recipe ``fit`` (then test) on the synthetic folder."""
    from speech_gru.train.training import main

    run_dir = tmp_path_factory.mktemp("run") / "demo"
    main(train_args(commands_dir, run_dir))
    return run_dir


@pytest.fixture(scope="session")
def checkpoint(trained_run: Path) -> Path:
    return trained_run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def forward_checkpoint(tmp_path_factory: pytest.TempPathFactory, commands_dir: Path) -> Path:
    """A forward (streaming) model the recipe trained on the synthetic folder, as
    ``trained_run``'s but with one direction and global feature statistics."""
    from speech_gru.train.training import main

    run_dir = tmp_path_factory.mktemp("run") / "forward"
    main(
        train_args(
            commands_dir, run_dir,
            "--model.architecture.direction", "forward",
            "--model.architecture.feature_norm", "global",
        )
    )  # fmt: skip
    return run_dir / "checkpoints" / "best.ckpt"
