"""Training across processes and surviving interruptions, on the CPU.

* Two DDP processes (Lightning's own launcher) test a checkpoint to exactly the accuracy
  of one process, over every test clip once, though the split does not divide by two.
* torchrun launches the recipe as two local processes; every training clip is seen once
  per epoch across both ranks.
* A run killed with SIGTERM in the middle of an epoch saves ``last.ckpt`` and, resumed
  with ``--ckpt_path last``, ends with the weights and metrics of an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import LABELS, recipe_args

TRAIN = Path(__file__).resolve().parents[1] / "recipes" / "speech_commands" / "train.py"


def run(
    args: list[str], launcher: list[str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    command = [*(launcher or [sys.executable]), str(TRAIN), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, **kwargs)


def split_size(data_root: Path, split: str) -> int:
    from speech_gru.train.data import SpeechCommandsDataModule

    dm = SpeechCommandsDataModule(
        root=str(data_root), version="folder", labels=LABELS, num_workers=0,
        unknown_fraction=None, testing_percent=20,
    )  # fmt: skip
    dm.setup()
    return len(dm.datasets[split])


@pytest.mark.slow
def test_two_ddp_processes_test_every_clip_once(
    checkpoint: Path, commands_dir: Path, tmp_path: Path
) -> None:
    n_test = split_size(commands_dir, "testing")
    results = {}
    for devices in ("1", "2"):
        run_dir = tmp_path / f"devices{devices}"
        extra = ["--ckpt_path", str(checkpoint), "--trainer.devices", devices]
        if devices == "2":
            extra += ["--trainer.strategy", "ddp"]
        done = run(
            recipe_args(
                "test", commands_dir, run_dir, *extra, "--model.architecture.hidden_size", "64"
            )
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results[devices] = json.loads((run_dir / "test_results.json").read_text())
    assert n_test % 2 == 1, "an odd split shows that padding does not count"
    assert results["1"]["test/clips"] == results["2"]["test/clips"] == n_test
    assert results["2"]["test/acc"] == pytest.approx(results["1"]["test/acc"], abs=1e-6)


def epoch_clips(run_dir: Path) -> list[float]:
    rows = csv.DictReader((run_dir / "logs" / "version_0" / "metrics.csv").open())
    return [float(r["train/clips"]) for r in rows if r.get("train/clips")]


@pytest.mark.slow
def test_torchrun_two_local_processes_see_each_training_clip_once(
    commands_dir: Path, tmp_path: Path
) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_dir = tmp_path / "torchrun"
    args = recipe_args(
        "fit", commands_dir, run_dir, "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_epochs", "2",
    )  # fmt: skip
    done = run(args, launcher=torchrun)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["world_size"] == 2
    assert epoch_clips(run_dir) == [split_size(commands_dir, "training")] * 2
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test/clips"] == split_size(commands_dir, "testing")


def final_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], int]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return state["state_dict"], state["global_step"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(commands_dir: Path, tmp_path: Path) -> None:
    common = ("--trainer.max_epochs", "3", "--last_every_n_steps", "2")
    steps_per_epoch = -(-split_size(commands_dir, "training") // 32)  # demo.yaml batch 32

    straight = tmp_path / "straight"
    done = run(recipe_args("fit", commands_dir, straight, *common))
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    command = [sys.executable, str(TRAIN), *recipe_args("fit", commands_dir, killed, *common)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.is_file():
            step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            if step > steps_per_epoch and step % steps_per_epoch:  # in the second epoch
                break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "resume with --ckpt_path last" in err
    _, stopped_at = final_state(killed)
    assert stopped_at % steps_per_epoch != 0, "the kill should land mid-epoch"
    assert stopped_at < 3 * steps_per_epoch

    resumed = run(recipe_args("fit", commands_dir, killed, *common, "--ckpt_path", "last"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    weights, step = final_state(killed)
    expected, expected_step = final_state(straight)
    assert step == expected_step == 3 * steps_per_epoch
    for name, value in expected.items():
        torch.testing.assert_close(weights[name], value, atol=1e-5, rtol=1e-5, msg=name)
    logs = killed / "logs"  # the killed run's log survives beside the resumed run's
    assert [p.parent.name for p in sorted(logs.glob("*/metrics.csv"))] == ["version_0", "version_1"]
    got = json.loads((killed / "results.json").read_text())
    want = json.loads((straight / "results.json").read_text())
    assert got["test/acc"] == pytest.approx(want["test/acc"], abs=1e-6)
    assert got["test/loss"] == pytest.approx(want["test/loss"], abs=1e-4)


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path: Path, monkeypatch) -> None:
    from speech_gru.runtime import checkpoint

    path = tmp_path / "last.ckpt"
    checkpoint.write_checkpoint({"step": 1}, path)
    before = path.read_bytes()

    def crash(obj, f) -> None:  # noqa: ANN001 - torch.save's signature
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.write_checkpoint({"step": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left
