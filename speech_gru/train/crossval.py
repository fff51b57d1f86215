"""Speaker-disjoint k-fold cross-validation of the recipe.

The development folder's speakers are dealt into ``k`` folds (``data.folds``, by a hash
of the speaker id); fold ``i``'s run trains on the other folds and tests on fold ``i``, so
every clip is scored once, by a model that never heard its speaker. A single test split
of a few hundred clips moves by more than a point from one seed to the next; the pooled
accuracy over every clip of the folder does not.

Example::

    python recipes/speech_commands/crossval.py --folds 5 --run_dir runs/cv -- \\
        --config recipes/speech_commands/conf/folder.yaml --data.root DATA_DIR

Each fold runs ``fit`` (then test) in its own process into ``RUN/fold_I``; a fold whose
``results.json`` is there already is not run again, so an interrupted cross-validation
continues where it stopped; ``--jobs N`` trains N folds at once, sharing the CPU threads.
``RUN/crossval.json`` holds each fold's and the pooled figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def fold_command(recipe_args: Sequence[str], folds: int, fold: int, run_dir: Path) -> list[str]:
    """The recipe command of one fold; ``{fold}`` in an argument becomes the fold's number
    (``--model.init_from runs/cv/fold_{fold}/checkpoints/best.ckpt``: a model per fold
    that never heard the fold's speakers either)."""
    recipe_args = [arg.replace("{fold}", str(fold)) for arg in recipe_args]
    return [
        sys.executable, "-m", "speech_gru.train.training", "fit", *recipe_args,
        "--data.folds", str(folds), "--data.fold", str(fold), "--run_dir", str(run_dir),
    ]  # fmt: skip


def fold_env(jobs: int) -> dict[str, str]:
    """The environment of each fold's process: with several folds at once, each gets its
    share of the CPU threads (two torch processes that each take every core spin on each
    other), unless ``OMP_NUM_THREADS`` is set already."""
    env = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def pooled(results: list[dict]) -> dict:
    """Accuracy over every test clip of every fold, and the spread of the folds' figures.

    Args:
        results: each fold's ``results.json`` (``test/acc``, ``test/clips``).
    """
    clips = [r["test/clips"] for r in results]
    accuracies = [r["test/acc"] for r in results]
    correct = sum(a * n for a, n in zip(accuracies, clips, strict=True))
    mean = sum(accuracies) / len(accuracies)
    spread = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / max(1, len(accuracies) - 1))
    return {
        "accuracy": correct / sum(clips),
        "clips": sum(clips),
        "fold_mean": mean,
        "fold_std": spread,
        "folds": [{"test/acc": a, "test/clips": n} for a, n in zip(accuracies, clips, strict=True)],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Speaker-disjoint k-fold cross-validation of the recipe "
        "(arguments after -- go to every fold's train.py fit)."
    )
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--run_dir", default="runs/crossval", help="folder of the folds' runs")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="folds trained at once (default 1); the CPU threads are shared among them",
    )
    parser.add_argument("recipe", nargs=argparse.REMAINDER, help="-- then recipe arguments")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    recipe = args.recipe[1:] if args.recipe[:1] == ["--"] else args.recipe
    run_dir = Path(args.run_dir)
    dones = [run_dir / f"fold_{fold}" / "results.json" for fold in range(args.folds)]
    todo = [fold for fold in range(args.folds) if not dones[fold].is_file()]
    env = fold_env(args.jobs)
    failed = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:

        def train(fold: int) -> int:
            fold_dir = run_dir / f"fold_{fold}"
            print(f"fold {fold + 1}/{args.folds}: training into {fold_dir}", flush=True)
            command = fold_command(recipe, args.folds, fold, fold_dir)
            return subprocess.run(command, env=env).returncode

        for fold, status in zip(todo, pool.map(train, todo), strict=True):
            if status != 0 or not dones[fold].is_file():
                failed.append(fold)
                print(f"error: fold {fold} failed (exit code {status}); see "
                      f"{run_dir / f'fold_{fold}'}", file=sys.stderr)  # fmt: skip
    if failed:
        return 1
    results = [json.loads(done.read_text()) for done in dones]
    summary = {"folds_total": args.folds, "recipe": recipe, **pooled(results)}
    (run_dir / "crossval.json").write_text(json.dumps(summary, indent=2) + "\n")
    for fold, row in enumerate(summary["folds"]):
        print(f"fold {fold}: accuracy {row['test/acc']:.4f} on {row['test/clips']:.0f} clips")
    print(
        f"cross-validated accuracy: {summary['accuracy']:.4f} on {summary['clips']:.0f} clips "
        f"(folds {summary['fold_mean']:.4f} +- {summary['fold_std']:.4f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
