"""Where one clip's inference time goes, and how it scales with the encoder's size.

Latency does not depend on the weights' values, so this needs no checkpoint: it builds
untrained models with a recipe config's features and head, exports each to TorchScript
(float32 and int8, as ``speech-gru export`` does), and prints on ``--threads`` CPU threads
(default one) the median time to classify one 1-second clip, per hidden size, and the same
for the ONNX export in ONNX Runtime; then the
time of the MFCC frontend and of the recurrent encoder alone, at the config's size::

    python tools/bench_sizes.py --config recipes/speech_commands/conf/folder.yaml \\
        --sizes 64 96 128 160 192

Use it to pick a deployment size before training one; accuracy needs a trained model
(``tools/bench_infer.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

try:
    from tools.bench_infer import median_ms
except ImportError:  # run as a script: tools/ itself is on sys.path
    from bench_infer import median_ms  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]


def build(model_config: dict, cell: str, hidden: int) -> torch.nn.Module:
    """An untrained 12-class KeywordModel of a config's ``model:`` section, at ``cell`` and
    ``hidden`` units."""
    from speech_gru.core.model import KeywordModel, ModelConfig

    section = dict(model_config)
    architecture = section.get("architecture", {}) | {"cell": cell, "hidden_size": hidden}
    config = ModelConfig.from_hparams(section | {"architecture": architecture}, num_classes=12)
    return KeywordModel(config).eval()


def onnx_ms(wrapper: torch.nn.Module, classes: int, clip: torch.Tensor, runs: int) -> float:
    """Median latency of ``wrapper`` exported as ``speech-gru export --format onnx`` does,
    in the ONNX Runtime session that ``load_classifier`` opens (on torch's thread count)."""
    from speech_gru.runtime.checkpoint import export_metadata
    from speech_gru.runtime.classifier import load_classifier
    from speech_gru.runtime.export import export_onnx

    labels = [str(i) for i in range(classes)]  # an export needs a label list
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notices on GRU batch sizes
        path = Path(tmp) / "model.onnx"
        path.write_bytes(export_onnx(wrapper, export_metadata(labels, {}), quantize=False))
        backend = load_classifier(path).backend
    batch = clip.numpy()
    return median_ms(lambda: backend(batch, None), runs)


def main(argv: list[str] | None = None) -> int:
    import yaml

    from speech_gru.runtime.export import inference_module, quantize_int8

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "recipes/speech_commands/conf/folder.yaml"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160, 192])
    parser.add_argument("--cell", default="gru", choices=["gru", "lstm"])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_config = yaml.safe_load(Path(args.config).read_text()).get("model") or {}
    clip = torch.randn(1, 16000) * 0.1

    print(f"one 1-second clip, {args.threads} thread(s), median of {args.runs} runs")
    print(f"{'hidden':>6} {'parameters':>10} {'TorchScript ms':>14} {'int8 ms':>8} {'ONNX ms':>8}")
    for hidden in args.sizes:
        model = build(model_config, args.cell, hidden)
        wrapper = inference_module(model)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript and torch.ao deprecation notices
            forms = [torch.jit.script(wrapper), torch.jit.script(quantize_int8(wrapper))]
            fp32, int8 = (median_ms(lambda f=f: f(clip), args.runs) for f in forms)
            onnx = onnx_ms(wrapper, model.config.num_classes, clip, args.runs)
        print(f"{hidden:>6} {model.num_parameters():>10,} {fp32:>14.2f} {int8:>8.2f} {onnx:>8.2f}")

    hidden = model_config.get("architecture", {}).get("hidden_size", args.sizes[-1])
    model = build(model_config, args.cell, int(hidden))
    with torch.no_grad():
        feats = model.frontend(clip)  # (1, T, F)
        frontend = median_ms(lambda: model.frontend(clip), args.runs)
        encoder = median_ms(lambda: model.encoder(feats), args.runs)
    steps, layers = feats.shape[1], model.config.num_layers
    print(
        f"\nat hidden {model.config.hidden_size} (float32): MFCC frontend {frontend:.2f} ms, "
        f"{args.cell.upper()} encoder {encoder:.2f} ms = {steps} steps x {layers} layers x 2 "
        f"directions, {1000 * encoder / (steps * layers * 2):.1f} us per step"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
