"""Cost of live streaming: how fast the detector keeps up with the microphone.

Live, ``StreamingDetector`` gets one hop of audio at a time (``batch_windows=1``) and
re-runs the model on the last second after every hop, so each hop must be processed in
less than a hop's time. This tool feeds ``--seconds`` of audio (noise, or ``--input``)
exactly that way after a short warm-up and reports the real-time factor (processing
time / audio time), the per-hop latency (mean, p50, p95, max) and the windows scored.
``--batch-windows N`` shows the file-mode speed instead (N windows per model call).

Without ``--checkpoint`` an untrained default model (v2_12 labels) is timed: the cost
does not depend on the weights.

Example:
    python tools/bench_stream.py --checkpoint runs/x/checkpoints/best.ckpt --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from speech_gru.core.audio import SAMPLE_RATE, AudioError, load_audio
from speech_gru.runtime.detector import DetectorConfig, StreamingDetector
from speech_gru.runtime.source import array_chunks


@dataclass
class BenchResult:
    """Timings of one streaming run.

    Attributes:
        audio_s: seconds of audio streamed.
        processing_s: wall time spent in ``push`` and ``flush``.
        windows: windows scored.
        calls: pushes that scored at least one window.
        call_ms: wall time of each of those pushes, in milliseconds.
    """

    audio_s: float
    processing_s: float
    windows: int
    calls: int
    call_ms: list[float]

    @property
    def rtf(self) -> float:
        return self.processing_s / self.audio_s

    def summary(self, budget_ms: float) -> dict:
        """Headline numbers; ``budget_ms`` is the time one call may take to keep up."""
        ms = np.asarray(self.call_ms) if self.call_ms else np.zeros(1)
        return {
            "audio_s": self.audio_s,
            "processing_s": self.processing_s,
            "real_time_factor": self.rtf,
            "windows_scored": self.windows,
            "scoring_calls": self.calls,
            "ms_per_window": 1000 * self.processing_s / max(1, self.windows),
            "latency_mean_ms": float(ms.mean()),
            "latency_p50_ms": float(np.percentile(ms, 50)),
            "latency_p95_ms": float(np.percentile(ms, 95)),
            "latency_max_ms": float(ms.max()),
            "calls_over_budget": int((ms > budget_ms).sum()) if self.call_ms else 0,
        }


def make_classifier(checkpoint: str | None):  # noqa: ANN201 - a speech_gru.runtime.classifier.Classifier
    """The checkpoint's classifier, or an untrained default model with the v2_12 labels."""
    from speech_gru.runtime.classifier import Classifier, checkpoint_backend, load_classifier

    if checkpoint:
        return load_classifier(checkpoint)
    from speech_gru.train.lit import KeywordSpotter

    module = KeywordSpotter(labels="v2_12")
    backend = checkpoint_backend(module.model.eval())
    return Classifier(backend, list(module.labels), Path("untrained"), "checkpoint")


def bench(
    scorer,  # noqa: ANN001 - (B, window) -> (B, C)
    labels: Sequence[str],
    audio: np.ndarray,
    config: DetectorConfig,
    warmup_s: float = 2.0,
) -> BenchResult:
    """Push ``audio`` one hop at a time, timing every push that scored windows.

    The first ``warmup_s`` seconds are streamed once untimed (allocations, first-call
    costs); then the detector is reset and the whole of ``audio`` is timed.
    """
    detector = StreamingDetector(scorer, labels, config)
    hop = config.hop
    warm = audio[: max(config.window + hop, round(warmup_s * config.sample_rate))]
    for _ in detector.events(array_chunks(warm, hop)):
        pass
    detector.reset()

    call_ms: list[float] = []

    def timed_chunks() -> Iterator[np.ndarray]:
        """Each hop of ``audio``; the time the detector takes with one (from handing it
        over to asking for the next) is a call when that scored windows."""
        for chunk in array_chunks(audio, hop):
            before = detector.windows_scored
            t0 = time.perf_counter()
            yield chunk
            if detector.windows_scored > before:
                call_ms.append(1000 * (time.perf_counter() - t0))

    t0 = time.perf_counter()
    for _ in detector.events(timed_chunks()):
        pass
    total = time.perf_counter() - t0
    return BenchResult(
        audio_s=audio.size / config.sample_rate,
        processing_s=total,
        windows=detector.windows_scored,
        calls=len(call_ms),
        call_ms=call_ms,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Time live streaming: real-time factor and per-hop latency.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", help="trained checkpoint (default: untrained v2_12 model)")
    p.add_argument("--input", help="audio file to stream (looped or cut to --seconds)")
    p.add_argument("--seconds", type=float, default=60.0, help="audio streamed")
    p.add_argument("--hop", type=float, default=DetectorConfig.hop_s, help="seconds per hop")
    p.add_argument("--batch-windows", type=int, default=1, help="windows per model call (1 = live)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--warmup", type=float, default=2.0, help="untimed seconds first")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--json", help="write the results and settings to this file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from rich.console import Console
    from rich.table import Table

    from speech_gru.runtime.checkpoint import ModelLoadError
    from speech_gru.train.corpus import synthetic_noise

    err = Console(stderr=True)
    torch.set_num_threads(max(1, args.threads))
    try:
        config = DetectorConfig(hop_s=args.hop, batch_windows=args.batch_windows)
        classifier = make_classifier(args.checkpoint)
        n = round(args.seconds * SAMPLE_RATE)
        if args.input:
            source = load_audio(args.input)
            audio = np.resize(source, n).astype(np.float32)  # loops a short file
        else:
            audio = synthetic_noise(args.seconds, seed=args.seed)[1][:n]  # pink
    except (ModelLoadError, AudioError, ValueError) as e:
        err.print(f"error: {e}")
        return 2

    def score(windows: np.ndarray) -> np.ndarray:
        return classifier.predict(torch.from_numpy(windows), batch_size=len(windows)).numpy()

    result = bench(score, classifier.labels, audio, config, args.warmup)
    budget_ms = 1000 * config.hop_s * config.batch_windows  # audio that arrives per call
    s = result.summary(budget_ms)
    table = Table(title="Streaming cost", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", f"{args.checkpoint or 'untrained v2_12'} ({classifier.kind})")
    table.add_row(
        "settings",
        f"hop {config.hop_s:g} s, window {config.window_s:g} s, batch_windows "
        f"{config.batch_windows}, {torch.get_num_threads()} thread(s), CPU",
    )
    table.add_row("audio", f"{s['audio_s']:.1f} s ({'file' if args.input else 'noise'})")
    table.add_row("processing", f"{s['processing_s']:.2f} s")
    table.add_row("real-time factor", f"{s['real_time_factor']:.3f}")
    table.add_row("windows scored", f"{s['windows_scored']} in {s['scoring_calls']} calls")
    table.add_row("ms per window", f"{s['ms_per_window']:.2f}")
    per = "hop" if config.batch_windows == 1 else f"call ({config.batch_windows} windows)"
    table.add_row(
        f"latency per {per}",
        f"mean {s['latency_mean_ms']:.1f}, p50 {s['latency_p50_ms']:.1f}, "
        f"p95 {s['latency_p95_ms']:.1f}, max {s['latency_max_ms']:.1f} ms",
    )
    table.add_row(f"calls slower than {budget_ms:.0f} ms (real time)", str(s["calls_over_budget"]))
    Console().print(table)
    if args.json:
        report = {
            "settings": vars(args),
            "detector": asdict(config),
            "threads": torch.get_num_threads(),
            "model_kind": classifier.kind,
            "results": s,
            "latencies_ms": result.call_ms,
        }
        Path(args.json).write_text(json.dumps(report, indent=1))
        err.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
