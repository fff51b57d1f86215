"""Cost of a stateful forward model per 20 ms frame: ``KeywordModel.step`` on one thread.

A forward (streaming) model advances one frame for each hop of new audio, carrying its
GRU state and the samples not yet framed (``KeywordModel.step``), instead of re-running
a whole second as the bidirectional model must. This feeds ``--seconds`` of noise one hop
at a time to ``--streams`` streams scored as one batch and reports the time per frame
(all streams) and per stream-frame, and the real-time streams one core carries at that
batch (the hop's duration over the cost of one stream's frame)::

    python tools/bench_step.py --checkpoint runs/fwd/checkpoints/best.ckpt --streams 1 64

Without ``--checkpoint`` an untrained model of ``conf/stream_gru.yaml``'s size is timed:
the cost does not depend on the weights. Eager PyTorch, float32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load(checkpoint: str | None):  # noqa: ANN201 - a KeywordModel
    from speech_gru.infer import load_checkpoint_model
    from speech_gru.model import ArchitectureConfig, KeywordModel, ModelConfig

    if checkpoint:
        return load_checkpoint_model(checkpoint)[0]
    import yaml

    from speech_gru.features import FeatureConfig

    conf = yaml.safe_load((ROOT / "recipes/speech_commands/conf/stream_gru.yaml").read_text())
    model = conf["model"]
    return KeywordModel(
        ModelConfig.build(
            12, ArchitectureConfig(**model["architecture"]), FeatureConfig(**model["features"])
        )
    )


def bench(model, streams: int, seconds: float) -> dict:  # noqa: ANN001
    hop = model.config.features.hop_length
    frames = int(seconds * 16000 / hop)
    audio = torch.randn(streams, hop * (frames + 10)) * 0.05
    state = model.initial_state(streams)
    with torch.inference_mode():
        for i in range(10):  # warm-up, and the first frames' n_fft - hop samples
            _, state = model.step(audio[:, i * hop : (i + 1) * hop], state)
        start = time.perf_counter()
        for i in range(10, 10 + frames):
            _, state = model.step(audio[:, i * hop : (i + 1) * hop], state)
        elapsed = time.perf_counter() - start
    per_frame = elapsed / frames
    hop_s = hop / 16000
    return {
        "streams": streams,
        "frames": frames,
        "ms_per_frame": 1000 * per_frame,
        "ms_per_stream_frame": 1000 * per_frame / streams,
        "streams_per_core": hop_s / (per_frame / streams),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", help="a forward model's checkpoint (default: untrained)")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--seconds", type=float, default=5.0, help="audio per stream")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load(args.checkpoint).eval()
    if model.config.direction != "forward":
        sys.exit("error: the model is bidirectional; only a forward model steps frame by frame")
    c = model.config
    print(f"model: {c.cell} forward, {c.num_layers} x {c.hidden_size}, "
          f"{model.num_parameters():,} parameters; hop {c.features.hop_length / 16:g} ms; "
          "1 thread, eager float32")  # fmt: skip
    print("streams  ms/frame  ms/stream-frame  real-time streams per core")
    results = []
    for streams in args.streams:
        r = bench(model, streams, args.seconds)
        results.append(r)
        print(f"{r['streams']:7d}  {r['ms_per_frame']:8.3f}  {r['ms_per_stream_frame']:15.4f}"
              f"  {r['streams_per_core']:10.0f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
