"""Cost of a stateful forward model per 20 ms frame, on one thread, beside a window model.

A forward (streaming) model advances one frame for each hop of new audio, carrying its
GRU state (``KeywordModel.step``; ``export --streaming`` for ONNX), instead of re-running
a whole second as the bidirectional model must. This feeds ``--seconds`` of noise one
frame at a time to ``--streams`` streams scored as one batch and reports, per runtime
(eager PyTorch; ONNX Runtime float32 and int8, from the streaming export), the time per
frame (all streams), per stream-frame, and the real-time streams one core carries at that
batch (the frame's 20 ms over one stream's share of the cost)::

    python tools/bench_step.py --checkpoint runs/stream/checkpoints/best.ckpt --streams 1 64
    python tools/bench_step.py --hidden 128 --n-fft 480      # an untrained model of that size
    python tools/bench_step.py --window-model runs/folder/checkpoints/best.ckpt --hop 0.1

Without ``--checkpoint`` an untrained model of ``conf/stream_gru.yaml``'s size (or the
sizes given) is timed: the cost does not depend on the weights. ``--window-model`` also
times a bidirectional checkpoint the way ``stream`` runs it, one 1 s window per hop (ONNX
export, batch 1), and its streams per core at ``--hop``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(checkpoint: str | None, sizes: dict):  # noqa: ANN201 - a KeywordModel
    from speech_gru.core.model import ArchitectureConfig, KeywordModel, ModelConfig
    from speech_gru.runtime.checkpoint import load_checkpoint_model

    if checkpoint:
        return load_checkpoint_model(checkpoint)[0]
    import yaml

    from speech_gru.core.features import FeatureConfig

    conf = yaml.safe_load((ROOT / "recipes/speech_commands/conf/stream_gru.yaml").read_text())
    architecture = {**conf["model"]["architecture"], **sizes["architecture"]}
    features = {**conf["model"]["features"], **sizes["features"]}
    return KeywordModel(
        ModelConfig.build(12, ArchitectureConfig(**architecture), FeatureConfig(**features))
    )


def onnx_session(module: torch.nn.Module, quantize: bool):  # noqa: ANN201 - a session
    import onnxruntime as ort

    from speech_gru.runtime.export import export_onnx

    data = export_onnx(module, {}, quantize)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def timed(step: Callable[[int], None], frames: int) -> float:
    """Seconds per call of ``step(i)`` over ``frames`` calls, after 10 warm-up calls."""
    for i in range(10):
        step(i)
    start = time.perf_counter()
    for i in range(frames):
        step(10 + i)
    return (time.perf_counter() - start) / frames


def eager(model, streams: int, frames: int) -> float:  # noqa: ANN001
    hop = model.config.features.hop_length
    audio = torch.randn(streams, hop * (frames + 12)) * 0.05
    state = [model.initial_state(streams)]

    def step(i: int) -> None:
        _, state[0] = model.step(audio[:, i * hop : (i + 1) * hop], state[0])

    with torch.inference_mode():
        return timed(step, frames)


def onnx(session, spec: dict, streams: int, frames: int) -> float:  # noqa: ANN001
    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal((streams, spec["frame_hop"]))).astype(np.float32)
    feed = {
        "audio": audio,
        "samples": np.zeros((streams, *spec["samples"]), np.float32),
        "hidden": np.zeros((spec["hidden"][0], streams, spec["hidden"][1]), np.float32),
        "past": np.full((streams, *spec["past"]), -np.inf, np.float32),
    }

    def step(i: int) -> None:
        _, _, feed["samples"], feed["hidden"], feed["past"] = session.run(None, feed)

    return timed(step, frames)


def window_cost(checkpoint: str, seconds: float) -> float:
    """Seconds to score one 1 s window with a bidirectional checkpoint's ONNX export."""
    from speech_gru.runtime.classifier import load_classifier
    from speech_gru.runtime.export import export

    with tempfile.TemporaryDirectory() as scratch:
        classifier = load_classifier(export(checkpoint, Path(scratch) / "window.onnx", "onnx"))
    window = (0.05 * np.random.default_rng(0).standard_normal((1, 16000))).astype(np.float32)
    calls = max(20, int(seconds * 50))
    return timed(lambda i: classifier.score_windows(window), calls)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", help="a forward model's checkpoint (default: untrained)")
    p.add_argument("--cell", choices=("gru", "lstm"), help="untrained model: the cell")
    p.add_argument("--hidden", type=int, help="untrained model: units")
    p.add_argument("--layers", type=int, help="untrained model: layers")
    p.add_argument("--n-fft", type=int, help="untrained model: window length in samples")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--seconds", type=float, default=3.0, help="audio per stream")
    p.add_argument("--runtimes", nargs="+", default=["eager", "onnx", "onnx-int8"],
                   choices=("eager", "onnx", "onnx-int8"))  # fmt: skip
    p.add_argument("--window-model", help="a bidirectional checkpoint to time per window")
    p.add_argument("--hop", type=float, default=0.1, help="the window model's hop, s")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sizes = {
        "architecture": {
            k: v for k, v in (("cell", args.cell), ("hidden_size", args.hidden),
                              ("num_layers", args.layers)) if v is not None
        },
        "features": {"n_fft": args.n_fft} if args.n_fft else {},
    }  # fmt: skip
    model = load(args.checkpoint, sizes).eval()
    if model.config.direction != "forward":
        sys.exit("error: the model is bidirectional; only a forward model steps frame by frame")
    from speech_gru.runtime.export import StreamingStep

    c, f = model.config, model.config.features
    frame_s = f.hop_length / f.sample_rate
    print(f"model: {c.cell} forward, {c.num_layers} x {c.hidden_size}, "
          f"{model.num_parameters():,} parameters; {f.n_fft / 16:g} ms windows every "
          f"{frame_s * 1000:g} ms; 1 thread")  # fmt: skip
    print("runtime     streams  ms/frame  ms/stream-frame  real-time streams per core")
    results = []
    frames = int(args.seconds / frame_s)
    for runtime in args.runtimes:
        if runtime != "eager":
            step_module = StreamingStep(model).eval()
            with torch.no_grad():
                session = onnx_session(step_module, runtime == "onnx-int8")
        for streams in args.streams:
            if runtime == "eager":
                per_frame = eager(model, streams, frames)
            else:
                per_frame = onnx(session, step_module.spec, streams, frames)
            r = {
                "runtime": runtime,
                "streams": streams,
                "ms_per_frame": 1000 * per_frame,
                "ms_per_stream_frame": 1000 * per_frame / streams,
                "streams_per_core": frame_s / (per_frame / streams),
            }
            results.append(r)
            print(f"{runtime:10s}  {streams:7d}  {r['ms_per_frame']:8.3f}  "
                  f"{r['ms_per_stream_frame']:15.4f}  {r['streams_per_core']:10.0f}")  # fmt: skip
    if args.window_model:
        cost = window_cost(args.window_model, args.seconds)
        r = {
            "runtime": "window-onnx",
            "hop_s": args.hop,
            "ms_per_window": 1000 * cost,
            "streams_per_core": args.hop / cost,
        }
        results.append(r)
        print(f"window model (ONNX, one 1 s window per {args.hop:g} s hop): "
              f"{r['ms_per_window']:.3f} ms per hop, {r['streams_per_core']:.0f} "
              "real-time streams per core")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
