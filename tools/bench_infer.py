"""Inference speed (and accuracy) of a model in every deployable form, side by side.

Exports the checkpoint to TorchScript and ONNX, float32 and int8, then measures for each
form, on ``--threads`` CPU threads (default one): the median latency of classifying one
1-second clip over ``--runs`` runs, and the throughput of batches of ``--batch`` clips.
With ``--data`` it also scores every form on the held-out speakers of a dataset folder,
so the cost of quantization is measured on the same clips::

    python tools/bench_infer.py --checkpoint runs/dev/checkpoints/best.ckpt \\
        --data data/test_v0.02
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

FORMS = [
    ("checkpoint", None, False),
    ("TorchScript", "torchscript", False),
    ("TorchScript int8", "torchscript", True),
    ("ONNX", "onnx", False),
    ("ONNX int8", "onnx", True),
]


def held_out_clips(root: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Clips and labels of one split of a folder, as the recipe's folder mode splits it."""
    from speech_gru.train.data import SpeechCommandsDataModule

    dm = SpeechCommandsDataModule(
        root=root, version="folder", labels="v2_12", unknown_fraction=None, num_workers=0
    )
    dm.setup()
    dataset = dm.datasets[split]
    waves = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    labels = np.array([dataset[i][1] for i in range(len(dataset))])
    return waves, labels, dm.labels


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` calls, after 10 warm-up
    calls."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def throughput(classifier, batch: np.ndarray, repeats: int = 5) -> float:  # noqa: ANN001
    classifier.predict(batch, batch_size=len(batch))
    start = time.perf_counter()
    for _ in range(repeats):
        classifier.predict(batch, batch_size=len(batch))
    return repeats * len(batch) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (.ckpt)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--runs", type=int, default=200, help="single-clip runs to time")
    parser.add_argument("--batch", type=int, default=64, help="clips per batch for throughput")
    parser.add_argument("--data", help="dataset folder: also score each form on held-out clips")
    parser.add_argument("--split", default="testing", help="split of --data (default testing)")
    parser.add_argument("--out-dir", help="keep the exported files here")
    parser.add_argument("--json", help="write the table to this file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)

    from speech_gru.runtime.classifier import load_classifier
    from speech_gru.runtime.export import export

    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="speech_gru_bench_"))
    rng = np.random.default_rng(0)
    clip = (0.05 * rng.standard_normal((1, 16000))).astype(np.float32)
    batch = (0.05 * rng.standard_normal((args.batch, 16000))).astype(np.float32)
    data = held_out_clips(args.data, args.split) if args.data else None

    rows = []
    for name, fmt, quantize in FORMS:
        path = Path(args.checkpoint)
        if fmt is not None:
            suffix = ".onnx" if fmt == "onnx" else ".pt"
            path = out_dir / f"model{'-int8' if quantize else ''}{suffix}"
            export(args.checkpoint, path, fmt, quantize)
        classifier = load_classifier(path, trust_torchscript=True)  # exported just above
        row = {
            "form": name,
            "file_kb": path.stat().st_size / 1024,
            "latency_ms": median_ms(partial(classifier.predict, clip), args.runs),
            "clips_per_s": throughput(classifier, batch),
        }
        if data is not None:
            waves, labels, names = data
            assert classifier.labels == names, "the model's labels differ from the data's"
            predicted = classifier.predict(waves).argmax(-1).numpy()
            row["accuracy"] = float((predicted == labels).mean())
        rows.append(row)
        print(f"measured {name}", file=sys.stderr, flush=True)

    acc = "accuracy" in rows[0]
    header = "| form | file (KB) | 1-clip latency (ms) | batch clips/s |" + (
        " held-out accuracy |" if acc else ""
    )
    print(f"\n{args.threads} thread(s), median of {args.runs} runs, batches of {args.batch}")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for row in rows:
        line = (
            f"| {row['form']} | {row['file_kb']:.0f} | {row['latency_ms']:.2f} "
            f"| {row['clips_per_s']:.0f} |"
        )
        if acc:
            line += f" {row['accuracy']:.4f} |"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
