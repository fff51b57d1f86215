"""GRU against LSTM and a plain RNN at matched size: parameters, speed and held-out
accuracy.

For each cell this trains the recipe once per seed (each run in its own run folder, so an
interrupted comparison picks up where it stopped; seed by seed, so the first seed of every
cell is done first), measures training throughput and one-clip inference latency on this
machine, and prints a Markdown table::

    python recipes/speech_commands/experiments/compare_cells.py --data-root data/test_v0.02 \\
        --cells gru lstm rnn --seeds 0 1 2 --out runs/compare

Every cell gets the same recipe (``conf/folder.yaml``); the GRU has ``--hidden`` units
and the others the hidden size whose model has the GRU's parameter count, closest
(``matched_hidden``), unless ``--lstm-hidden`` / ``--rnn-hidden`` say otherwise; nothing is
tuned for one cell only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RECIPE = Path(__file__).resolve().parents[1]
ROOT = RECIPE.parents[1]
CONFIG = RECIPE / "conf" / "folder.yaml"


def parameters(cell: str, hidden: int, config: Path) -> int:
    """Parameters of the recipe's model with this cell and hidden size."""
    import yaml

    from speech_gru.train.lit import KeywordSpotter

    settings = yaml.safe_load(Path(config).read_text()).get("model") or {}
    architecture = settings.get("architecture", {}) | {"cell": cell, "hidden_size": hidden}
    return KeywordSpotter(**(settings | {"architecture": architecture})).model.num_parameters()


def matched_hidden(cell: str, target: int, config: Path) -> int:
    """The hidden size whose model has the parameter count closest to ``target`` (the
    count grows with the hidden size, so a bisection finds it)."""
    low, high = 1, 4096
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if parameters(cell, middle, config) <= target else (low, middle)
    return min((low, high), key=lambda h: abs(parameters(cell, h, config) - target))


def model_args(cell: str, hidden: int) -> list[str]:
    return ["--model.architecture.cell", cell, "--model.architecture.hidden_size", str(hidden)]


def train(cell: str, hidden: int, seed: int, args: argparse.Namespace) -> dict:
    """Run the recipe (fit, then test) unless its run folder already has results."""
    run_dir = Path(args.out) / f"{cell}{hidden}-seed{seed}"
    results = run_dir / "results.json"
    if not results.is_file():
        command = [
            sys.executable, str(RECIPE / "train.py"), "fit",
            "--config", str(args.config), "--data.root", str(args.data_root),
            "--run_dir", str(run_dir), "--seed_everything", str(seed),
            "--trainer.enable_progress_bar", "false", *model_args(cell, hidden), *args.extra,
        ]  # fmt: skip
        start = time.monotonic()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        (run_dir / "wall_seconds.txt").write_text(f"{time.monotonic() - start:.1f}\n")
    out = json.loads(results.read_text())
    wall = run_dir / "wall_seconds.txt"
    out["wall_seconds"] = float(wall.read_text()) if wall.is_file() else float("nan")
    return out


def speed(cell: str, hidden: int, steps: int, batch: int, config: Path) -> dict:
    """Training clips/s (full step: features, SpecAugment, forward, backward, AdamW) and
    the median latency of classifying one 1-second clip on one thread, for the model the
    recipe config describes."""
    import yaml

    if str(ROOT) not in sys.path:  # tools/ is not installed: the benchmarks' timer, from the tree
        sys.path.insert(0, str(ROOT))
    from speech_gru.train.lit import KeywordSpotter
    from tools.bench_infer import median_ms

    settings = yaml.safe_load(Path(config).read_text()).get("model") or {}
    architecture = settings.get("architecture", {}) | {"cell": cell, "hidden_size": hidden}
    module = KeywordSpotter(**(settings | {"architecture": architecture}))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    wave = torch.randn(batch, 16000) * 0.1
    target = torch.randint(0, len(module.labels), (batch,))
    module.log = lambda *a, **k: None  # no trainer attached
    module.train()
    for i in range(steps + 2):
        if i == 2:  # warm-up done
            start = time.perf_counter()
        loss = module.training_step((wave, target), i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    clips_per_s = steps * batch / (time.perf_counter() - start)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    module.eval()
    clip = torch.randn(1, 16000) * 0.1
    with torch.inference_mode():
        latency = median_ms(lambda: module(clip), runs=50)
    torch.set_num_threads(threads)
    return {
        "params": module.model.num_parameters(),
        "train_clips_per_s": clips_per_s,
        "latency_ms": latency,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="dataset folder (folder layout)")
    parser.add_argument("--config", default=str(CONFIG), help="recipe config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm", "rnn"],
                        choices=["gru", "lstm", "rnn"])  # fmt: skip
    parser.add_argument("--hidden", type=int, default=192, help="GRU hidden size")
    parser.add_argument("--lstm-hidden", type=int, help="LSTM hidden size (default: matched)")
    parser.add_argument("--rnn-hidden", type=int, help="RNN hidden size (default: matched)")
    parser.add_argument("--out", default="runs/compare", help="folder of the run folders")
    parser.add_argument("--speed-steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--skip-training", action="store_true", help="speed only")
    parser.add_argument("--json", help="write the numbers to this file")
    parser.add_argument("extra", nargs="*", help="more recipe arguments, after --")
    args = parser.parse_args(argv)
    target = parameters("gru", args.hidden, args.config)
    given = {"gru": args.hidden, "lstm": args.lstm_hidden, "rnn": args.rnn_hidden}
    cells = {cell: given[cell] or matched_hidden(cell, target, args.config) for cell in args.cells}

    runs: dict[str, list[dict]] = {cell: [] for cell in cells}
    if not args.skip_training:
        for seed in args.seeds:  # seed by seed: every cell's first run comes first
            for cell, hidden in cells.items():
                runs[cell].append(train(cell, hidden, seed, args))
    rows = {}
    for cell, hidden in cells.items():
        row = speed(cell, hidden, args.speed_steps, batch=64, config=args.config)
        if runs[cell]:
            accs = [r["test/acc"] for r in runs[cell]]
            row |= {
                "test_acc": accs,
                "test_acc_mean": statistics.mean(accs),
                "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "train_minutes": statistics.mean(r["wall_seconds"] for r in runs[cell]) / 60,
            }
        rows[f"{cell} {hidden}"] = row

    print("| cell | parameters | train clips/s | 1-clip latency (ms, 1 thread) | held-out acc |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        acc = "not trained"
        if "test_acc" in row:
            seeds = ", ".join(f"{a:.4f}" for a in row["test_acc"])
            acc = f"{row['test_acc_mean']:.4f} ± {row['test_acc_std']:.4f} ({seeds})"
        print(
            f"| {name} | {row['params']:,} | {row['train_clips_per_s']:.0f} "
            f"| {row['latency_ms']:.2f} | {acc} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
