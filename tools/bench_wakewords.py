"""Wake-phrase models against pocketsphinx on real recordings: one markdown table.

For each phrase (``--phrases``, by default the six of the real wake-word set) the model
``--models DIR/PHRASE/model.ckpt`` (a model whose keyword label is PHRASE) is scored on a
recording built for it: ``speech-gru evaluate-stream --clips DATA OTHER --split all``
places the real recordings of the phrase (``--data``, folder PHRASE) among the other
phrases of ``--data`` and the other speech of ``--other`` (Speech Commands layout), over
real noise (``--noise``, by default ``OTHER/_silence_``), each word at ``--snr`` dB, for
``--minutes``, with a seed. A phrase with few recordings is placed several times (each at
its own SNR, offset and background; the source line says how often). Then
``tools/bench_pocketsphinx.py`` runs pocketsphinx's keyphrase search for the phrase over
the same WAV with the same truth, matching rule and tolerance.

The table gives per phrase: the model's hit rate at its calibrated point (the operating
point its checkpoint carries) with its false alarms per hour; the best hit rate within
1 and 5 false alarms per hour on the model's DET curve and on pocketsphinx's threshold
sweep; and whether the model's hit rate is at least pocketsphinx's at every
false-alarm rate both curves reach. Everything is also written as JSON (``--json``), and
each phrase's recording, truth and reports stay in ``--work`` (default: next to
``--out``).

Example:
    python -m tools.bench_wakewords --models runs/wakewords \\
        --data /data/wakewords_dev --other /data/speech_commands_v2_dev \\
        --out docs/wakewords.md --json wakewords.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # python tools/bench_wakewords.py: find its sibling tools
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech_gru.analysis.streaming.decisions import lowest_miss_within  # noqa: E402
from tools import bench_pocketsphinx  # noqa: E402
from tools.bench_pocketsphinx import BenchError  # noqa: E402

PHRASES = ("computer", "hey_computer", "amelia", "athena", "hey_chatterbox", "hey_savant")
"""The phrases of the real wake-word set (its folders)."""
FA_LIMITS = (1.0, 5.0)
"""False alarms per hour within which the best hit rates are compared."""
RULE = "mean-then-threshold"
"""The detector's own decision rule: the DET curve the model is judged on."""


def _hit(row: dict | None) -> float | None:
    if row is None or row.get("miss_rate") is None:
        return None
    return 1.0 - row["miss_rate"]


def best_within(rows: Sequence[dict], limit: float) -> dict | None:
    """The row with the highest hit rate within ``limit`` false alarms per hour, as
    ``{"hit_rate", "false_alarms_per_hour", "threshold"}``; None when no row is within."""
    row = lowest_miss_within(rows, limit)
    if row is None:
        return None
    return {
        "hit_rate": _hit(row),
        "false_alarms_per_hour": row["false_alarms_per_hour"],
        "threshold": row["threshold"],
    }


def compare_curves(model: Sequence[dict], other: Sequence[dict]) -> dict:
    """Whether the model's hit rate is at least the other's at every false-alarm rate both
    curves reach.

    At each false-alarm rate x that a row of either curve has, between the larger of the
    two curves' lowest rates and the smaller of their highest, each curve's hit rate is
    its best within x. ``at_least`` is True when the model's is never lower, False when it
    is lower somewhere (``worse_at``: the first such rate, with both hit rates), None when
    the curves share no rate (or have no keywords).
    """
    model = [r for r in model if r.get("miss_rate") is not None]
    other = [r for r in other if r.get("miss_rate") is not None]
    if not model or not other:
        return {"at_least": None, "rates": 0, "worse_at": None}
    low = max(min(r["false_alarms_per_hour"] for r in c) for c in (model, other))
    high = min(max(r["false_alarms_per_hour"] for r in c) for c in (model, other))
    rates = sorted({r["false_alarms_per_hour"] for r in [*model, *other]})
    rates = [x for x in rates if low <= x <= high]
    for x in rates:
        mine = _hit(lowest_miss_within(model, x))
        theirs = _hit(lowest_miss_within(other, x))
        if mine is not None and theirs is not None and mine < theirs - 1e-12:
            return {
                "at_least": False,
                "rates": len(rates),
                "worse_at": {"false_alarms_per_hour": x, "model": mine, "other": theirs},
            }
    return {"at_least": bool(rates) or None, "rates": len(rates), "worse_at": None}


def summarize(phrase: str, stream: dict | None, sphinx: dict | None, errors: dict) -> dict:
    """One phrase's row: the model's numbers from its ``evaluate-stream --json`` report,
    pocketsphinx's from ``bench_pocketsphinx.bench``, and their comparison; ``errors``
    holds what failed ({"model": ..., "pocketsphinx": ...})."""
    row: dict = {"phrase": phrase, "errors": dict(errors)}
    det = []
    if stream is not None:
        metrics = stream["metrics"]
        det = stream["det"].get(RULE, [])
        detector = stream["detector"]
        threshold = detector.get("thresholds", {}).get(phrase, detector["threshold"])
        row["source"] = stream["source"]
        row["keywords"] = metrics["keywords"]
        row["duration_s"] = stream["duration_s"]
        row["model"] = {
            "threshold": threshold,
            "hit_rate": metrics["hit_rate"],
            "false_alarms_per_hour": metrics["false_alarms_per_hour"],
            "best": {f"{t:g}": best_within(det, t) for t in FA_LIMITS},
        }
    if sphinx is not None:
        row["keywords"] = row.get("keywords", sphinx["keywords"])
        row["pocketsphinx"] = {
            "keyphrase": sphinx["keyphrase"],
            "decode_seconds": sphinx["decode_seconds"],
            "best": {f"{t:g}": best_within(sphinx["rows"], t) for t in FA_LIMITS},
        }
        if stream is not None:
            row["comparison"] = compare_curves(det, sphinx["rows"])
    return row


def _pct(value: float | None) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{100 * value:.1f} %")
    )


def _point(point: dict | None) -> str:
    if point is None:
        return "not reached"
    return f"{_pct(point['hit_rate'])} ({point['false_alarms_per_hour']:.1f})"


def _verdict(row: dict) -> str:
    comparison = row.get("comparison")
    if comparison is None:
        return "-"
    if comparison["at_least"] is None:
        return "no common FA/h"
    if comparison["at_least"]:
        return f"yes ({comparison['rates']} rates)"
    worse = comparison["worse_at"]
    return (
        f"no: {_pct(worse['model'])} vs {_pct(worse['other'])} "
        f"at {worse['false_alarms_per_hour']:.1f} FA/h"
    )


def markdown(rows: Sequence[dict], settings: dict) -> str:
    """The table and the notes under it, as markdown."""
    limits = [f"{t:g}" for t in FA_LIMITS]
    head = (
        "| phrase | spoken | model at its point: hit rate (FA/h) | "
        + " | ".join(f"model best <= {t} FA/h" for t in limits)
        + " | "
        + " | ".join(f"pocketsphinx best <= {t} FA/h" for t in limits)
        + " | model >= pocketsphinx at every FA/h both reach |"
    )
    lines = [
        f"Wake phrases on {settings['minutes']:g}-minute recordings of real speech "
        f"(seed {settings['seed']}, every word at {settings['snr']:g} dB SNR over real noise, "
        f"{settings['distractors']:.0%} of words other speech; a hit is a detection from the "
        f"phrase's start to {settings['tolerance']:g} s after its end). Best hit rates show "
        "the false alarms per hour they come with in brackets.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for row in rows:
        model, sphinx = row.get("model"), row.get("pocketsphinx")
        cells = [row["phrase"], str(row.get("keywords", "-"))]
        if model:
            cells.append(
                f"{_pct(model['hit_rate'])} ({model['false_alarms_per_hour']:.1f}) "
                f"at {model['threshold']:g}"
            )
            cells += [_point(model["best"][t]) for t in limits]
        else:
            cells += ["-"] * (1 + len(limits))
        cells += [_point(sphinx["best"][t]) for t in limits] if sphinx else ["-"] * len(limits)
        cells.append(_verdict(row))
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    for row in rows:
        for what, error in row["errors"].items():
            notes.append(f"- {row['phrase']}: {what}: {error}")
        if row.get("source"):
            notes.append(f"- {row['phrase']}: {row['source']}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def evaluate_phrase(phrase: str, checkpoint: Path, work: Path, args: argparse.Namespace) -> dict:
    """Build the phrase's recording and score the model on it (``evaluate-stream``);
    then pocketsphinx on the same WAV. Returns ``summarize``'s row."""
    from speech_gru.cli.main import main as speech_gru

    work.mkdir(parents=True, exist_ok=True)
    wav, report = work / "recording.wav", work / "stream.json"
    noise = args.noise or Path(args.other) / "_silence_"
    argv = [
        "evaluate-stream", "--checkpoint", str(checkpoint),
        "--clips", str(args.data), str(args.other), "--split", "all",
        "--snr", f"{args.snr:g}", f"{args.snr:g}", "--minutes", f"{args.minutes:g}",
        "--seed", str(args.seed), "--distractors", f"{args.distractors:g}",
        "--tolerance", f"{args.tolerance:g}", "--threads", str(args.threads),
        "--save-wav", str(wav), "--json", str(report),
    ]  # fmt: skip
    if Path(noise).is_dir():
        argv += ["--noise", str(noise)]
    errors: dict[str, str] = {}
    stream = sphinx = None
    with (work / "evaluate_stream.txt").open("w") as log, contextlib.redirect_stdout(log):
        code = speech_gru(argv)
    if code != 0 or not report.is_file():
        errors["model"] = f"evaluate-stream failed (exit {code}; its error is above)"
        return summarize(phrase, None, None, errors)
    stream = json.loads(report.read_text())
    labels = {t["label"] for t in stream["truths"]}
    if labels != {phrase}:
        errors["model"] = f"{checkpoint}: its keywords on this data are {sorted(labels)}"
        return summarize(phrase, None, None, errors)
    if args.skip_pocketsphinx:
        errors["pocketsphinx"] = "not run (--skip-pocketsphinx)"
    else:
        try:
            sphinx = bench_pocketsphinx.bench(
                wav, wav.with_suffix(".json"), phrase, None, args.thresholds, args.tolerance,
                bench_pocketsphinx.parse_pronunciations(args.pronounce),
            )  # fmt: skip
            bench_pocketsphinx.write_json(work / "pocketsphinx.json", sphinx)
        except BenchError as err:
            errors["pocketsphinx"] = str(err)
    return summarize(phrase, stream, sphinx, errors)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench_wakewords",
        description="wake-phrase models against pocketsphinx on recordings of real speech",
    )
    p.add_argument("--models", required=True, metavar="DIR", help="holds PHRASE/model.ckpt")
    p.add_argument("--data", required=True, metavar="DIR", help="real wake-word recordings")
    p.add_argument(
        "--other", required=True, metavar="DIR", help="other real speech (Speech Commands layout)"
    )
    p.add_argument(
        "--phrases",
        nargs="+",
        metavar="PHRASE",
        help=f"phrases to score (default: those of {', '.join(PHRASES)} with a model)",
    )
    p.add_argument("--noise", metavar="DIR", help="background recordings (default OTHER/_silence_)")
    p.add_argument("--minutes", type=float, default=60.0, help="recording length (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of each recording (default 0)")
    p.add_argument("--snr", type=float, default=10.0, help="each word's SNR in dB (default 10)")
    p.add_argument(
        "--distractors",
        type=float,
        default=0.6,
        help="share of words that are other speech (default 0.6)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="seconds after a phrase's end that a detection still hits it (default 1)",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the model")
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=list(bench_pocketsphinx.DEFAULT_THRESHOLDS),
        metavar="T",
        help="pocketsphinx kws thresholds (default: 12 log-spaced from 1e-50 to 1e-1)",
    )
    p.add_argument(
        "--pronounce",
        action="append",
        default=[],
        metavar='WORD="PH ONES"',
        help="phones of a word missing from pocketsphinx's dictionary; repeatable",
    )
    p.add_argument("--skip-pocketsphinx", action="store_true", help="score the models only")
    p.add_argument("--out", required=True, metavar="FILE.md", help="write the table here")
    p.add_argument("--json", metavar="FILE.json", help="write every number here")
    p.add_argument(
        "--work",
        metavar="DIR",
        help="keep each phrase's recording and reports here (default: OUT's name + _runs)",
    )
    return p


def _check(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The phrases to score with their checkpoints; BenchError for bad arguments."""
    for name in ("models", "data", "other"):
        if not Path(getattr(args, name)).is_dir():
            raise BenchError(f"--{name} {getattr(args, name)}: folder not found")
    if args.noise and not Path(args.noise).is_dir():
        raise BenchError(f"--noise {args.noise}: folder not found")
    if not (math.isfinite(args.minutes) and args.minutes > 0):
        raise BenchError(f"--minutes {args.minutes:g}: must be greater than 0")
    if not math.isfinite(args.snr):
        raise BenchError(f"--snr {args.snr:g}: must be a finite number of dB")
    if not 0 <= args.distractors < 1:
        raise BenchError(f"--distractors {args.distractors:g}: must be in [0, 1)")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise BenchError("--tolerance: must be a number >= 0")
    if args.threads < 1:
        raise BenchError("--threads: must be at least 1")
    if not all(0.0 < t <= 1.0 for t in args.thresholds):
        raise BenchError("--thresholds: each must be in (0, 1]")
    bench_pocketsphinx.parse_pronunciations(args.pronounce)
    models = Path(args.models)
    chosen = [(p, models / p / "model.ckpt") for p in (args.phrases or PHRASES)]
    if args.phrases:
        for phrase, checkpoint in chosen:
            if not checkpoint.is_file():
                raise BenchError(f"--phrases {phrase}: {checkpoint} not found")
    else:
        chosen = [(p, c) for p, c in chosen if c.is_file()]
        if not chosen:
            raise BenchError(f"--models {models}: no PHRASE/model.ckpt for any of {PHRASES}")
    for phrase, _ in chosen:
        if not (Path(args.data) / phrase).is_dir():
            raise BenchError(f"--data {args.data}: no folder {phrase}/")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        chosen = _check(args)
        out = Path(args.out)
        if not out.parent.is_dir():
            raise BenchError(f"--out {out}: folder {out.parent} not found")
        work = Path(args.work) if args.work else out.with_name(out.stem + "_runs")
        rows = []
        for phrase, checkpoint in chosen:
            print(f"{phrase}: scoring {checkpoint}", file=sys.stderr)
            rows.append(evaluate_phrase(phrase, checkpoint, work / phrase, args))
        settings = {k: v for k, v in vars(args).items() if k not in ("thresholds", "pronounce")} | {
            "pocketsphinx_thresholds": args.thresholds,
            "pronounce": args.pronounce,
        }
        table = markdown(rows, settings)
        out.write_text(table)
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    bench_pocketsphinx.json_safe({"settings": settings, "phrases": rows}),
                    indent=1,
                )
                + "\n"
            )
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or ''}: cannot write ({err.strerror or err})", file=sys.stderr)
        return 2
    print(table)
    print(f"wrote {out}" + (f" and {args.json}" if args.json else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
