"""Make the bundled model (``speech_gru/models/keywords12.ckpt``) from a data root.

Each step is a documented command, run in turn and skipped when its output is there, so
an interrupted build resumes where it stopped::

    python recipes/speech_commands/bundled.py --data data/test_v0.02 --work runs/bundled

1. ``speech-gru synth`` (``--engines``, default the rule-based three): synthetic speakers
   say the ten keywords, and other words as ``_unknown_``: common words and words that
   sound like a keyword (yeah, note, cup, town, loft, ride, cough, shop, ...; homophones
   such as "know" are left out by synth).
2. Assemble ``WORK/data``: links to every clip of ``--data`` (any folder in the Speech
   Commands layout; file names keep their speakers) and of the synthetic folder, and
   one-second pieces (the loudest of each file) of ``--other`` folders of real speech
   that holds no keyword, as ``_unknown_``.
3. Cross-validate (``--folds``, default 5): ``crossval.py`` trains a model per fold of
   speakers (``conf/folder.yaml`` + ``conf/bundled.yaml``); each is calibrated as in
   step 5 on the audio it trained on, then scored on the real clips (``--data``) of its
   held-out speakers, and on a streaming recording of them (``evaluate-stream``). Pooled,
   every real clip is scored once by a model that never heard its speaker:
   ``WORK/cv/summary.json`` and the table the card gives.
4. Train the shipped model on every speaker (``WORK/final``: no validation or test
   split, the last epoch), except the speakers of ``docs/examples``, whose clips the
   README plays to it as voices it never heard. With ``--folds 0``: one model with 10 %
   of the speakers held out for validation and 10 % for test (``WORK/run``) instead.
5. The operating point: ``speech-gru calibrate`` (``--target-fa`` false alarms per hour on
   the keyword-free audio of every split, averaging 0.8 s), then, with folds, the
   threshold replaced by the one that kept false alarms within ``--cv-target-fa`` (default
   5) an hour on the folds' pooled recordings. A point calibrated on audio the model
   trained on is too low for voices it never heard: the folds' own points (20 an hour on
   their training audio) gave 8-20 an hour on their unseen speakers (``keywords12.md``).
6. Slim the checkpoint (no training state, the weight matrices as float16: the 2 x 192
   GRU fits the package's 2 MB a model) into ``WORK/keywords12.ckpt``; ``--install``
   copies it into the package, where its card (``keywords12.json`` and ``.md``) is.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from speech_gru.runtime.checkpoint import OperatingPoint

RECIPE = Path(__file__).resolve().parent
AVERAGE = "0.8"
"""Seconds of score averaging of every operating point (folds and shipped model alike, so
the folds' DET curves pool by threshold)."""
DECISION = "mean-then-threshold"
"""The detector's own decision rule (averaged scores over a threshold) in the reports."""
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SOUNDS_LIKE = (
    "yeah", "yet", "yell", "yesterday", "guess", "less", "mess", "bless", "nest", "now", "note",
    "nose", "snow", "toe", "know", "goal", "gold", "ghost", "though", "girl", "grow", "cup",
    "upper", "pup", "hop", "sup", "town", "done", "downer", "gown", "clown", "round", "lift",
    "loft", "leaf", "laugh", "write", "ride", "bright", "white", "rice", "own", "an", "in",
    "of", "cough", "often", "awful", "offer", "shop", "step", "stock", "stomp", "top", "stub",
    "stopper", "goat", "gone", "dough", "bay", "oh", "low", "hey",
)  # fmt: skip
"""Words that sound like a keyword: the _unknown_ evidence a detector needs most."""
RULE_BASED = ("espeak-ng", "flite", "festival")
"""The synthesizers of the shipped model's synthetic voices (named, so that what the recipe
makes does not follow changes of synth's defaults; ``--engines ... kokoro`` adds the neural
voices)."""


def run(*command: str) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="real clips")
    parser.add_argument("--other", type=Path, nargs="*", default=[], help="other speech")
    parser.add_argument("--work", type=Path, default=Path("runs/bundled"))
    parser.add_argument("--speakers", type=int, default=120, help="synthetic speakers")
    parser.add_argument(
        "--target-fa",
        type=float,
        default=20.0,
        help="false alarms/h that calibrate allows on the keyword-free audio a model trained "
        "on (the shipped point with --folds 0; with folds, it sets each fold's point)",
    )
    parser.add_argument(
        "--cv-target-fa",
        type=float,
        default=5.0,
        help="false alarms/h of the shipped point on the folds' recordings of voices never "
        "heard (default 5)",
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        default=list(RULE_BASED),
        help="speech-gru synth's engines (default: the rule-based three the shipped model "
        "heard; kokoro, the neural voices, needs the [voices] extra)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--folds",
        type=int,
        default=5,
        help="speaker-disjoint cross-validation folds that measure the recipe before the "
        "shipped model trains on every speaker (default 5; 0: hold out 10 %% of the "
        "speakers for validation and 10 %% for test instead)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="folds trained at once (default 2)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=30.0,
        help="minutes of each fold's streaming recording (default 30)",
    )
    parser.add_argument("--install", action="store_true", help="copy into speech_gru/models")
    args = parser.parse_args(argv)
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds must be 0 or at least 2")

    synth = args.work / "synth"
    if not (synth / "synth.json").is_file():
        from speech_gru.train.synth import UNKNOWN_WORDS

        unknown = list(dict.fromkeys([*UNKNOWN_WORDS, *SOUNDS_LIKE]))
        noise = [str(d / "_silence_") for d in args.data if (d / "_silence_").is_dir()][:1]
        run(
            "speech-gru", "synth", *KEYWORDS, "--out", str(synth),
            "--speakers", str(args.speakers), "--unknown", *unknown,
            "--unknown-per-speaker", "8", "--seed", str(args.seed), "--engines", *args.engines,
            *(["--noise", noise[0]] if noise else []),
        )  # fmt: skip

    data = args.work / "data"
    from speech_gru.cli.wakeword import cut_negatives, link_clips

    linked = sum(link_clips(d, data) for d in [*args.data, synth])
    cut = cut_negatives(args.other, data, window_s=1.0)
    print(f"{data}: {linked} clips linked, {cut} pieces of other speech added", flush=True)

    recipe = [
        "--config", str(RECIPE / "conf" / "folder.yaml"),
        "--config", str(RECIPE / "conf" / "bundled.yaml"),
        "--data.root", str(data), "--seed_everything", str(args.seed),
    ]  # fmt: skip
    streams: list[dict] = []
    if args.folds:
        streams = cross_validate(args, recipe)
        # Every speaker trains the shipped model (the figures are the folds'), but for the
        # voices of the README's example clips, which it must never have heard.
        data = leave_out_speakers(data, args.work / "data_final", example_speakers())
        recipe[recipe.index("--data.root") + 1] = str(data)
        recipe += ["--data.validation_percent", "0", "--data.testing_percent", "0"]
    run_dir = args.work / ("final" if args.folds else "run")
    best = run_dir / "checkpoints" / "best.ckpt"
    if not best.is_file():
        run(sys.executable, str(RECIPE / "train.py"), "fit", *recipe, "--run_dir", str(run_dir))
    calibrated = run_dir / "calibrated.ckpt"  # beside the model it calibrates
    if not calibrated.is_file():
        run(
            "speech-gru", "calibrate", "--checkpoint", str(best), "--clips", str(data),
            "--split", "all", "--target-fa", f"{args.target_fa:g}", "--averages", AVERAGE,
            "--out", str(calibrated),
        )  # fmt: skip

    from speech_gru.runtime.bundled import MODELS
    from speech_gru.runtime.checkpoint import read_checkpoint, save_operating_point, slim_checkpoint

    if streams:  # the threshold that met --cv-target-fa on voices no fold model heard
        point = cross_validated_point(streams, args.cv_target_fa)
        save_operating_point(read_checkpoint(calibrated), point, calibrated)
        print(f"operating point: {point.settings_text()}; {point.provenance_text()}", flush=True)

    shipped = slim_checkpoint(calibrated, args.work / "keywords12.ckpt", half=True)
    print(f"wrote {shipped} ({shipped.stat().st_size / 1e6:.2f} MB)")
    if args.install:
        target = MODELS / shipped.name
        target.write_bytes(shipped.read_bytes())
        card = write_card(target)
        print(f"installed {target} and the file's facts in {card}; its figures and")
        print("keywords12.md are measured and written by hand (see the card)")
    return 0


def example_speakers() -> set[str]:
    """The speakers of the repository's example clips (``docs/examples``): the README
    says the bundled model never heard them."""
    from speech_gru.train.corpus import speaker_of

    examples = RECIPE.parents[1] / "docs" / "examples"
    return {speaker_of(path) for path in examples.glob("*.wav")}


def leave_out_speakers(data: Path, target: Path, speakers: set[str]) -> Path:
    """``target``: links to every clip of ``data`` but those of ``speakers``."""
    from speech_gru.cli.wakeword import link_clips
    from speech_gru.train.corpus import speaker_of

    link_clips(data, target, keep=lambda clip: speaker_of(clip) not in speakers)
    return target


def cross_validate(args: argparse.Namespace, recipe: list[str]) -> dict:
    """Train ``args.folds`` fold models (``crossval.py``), then score each as the shipped
    model is scored: calibrated for ``--target-fa`` on keyword-free audio it trained on,
    then clips and a streaming recording of the real speakers it never heard (the
    ``--data`` folders only, no synthetic voices). Pooled into ``WORK/cv/summary.json``;
    returns each fold's ``evaluate-stream`` report."""
    import json

    cv = args.work / "cv"
    run(
        sys.executable, str(RECIPE / "crossval.py"), "--folds", str(args.folds),
        "--jobs", str(args.jobs), "--run_dir", str(cv), "--", *recipe,
    )  # fmt: skip
    data = args.work / "data"
    folds = []
    for fold in range(args.folds):
        where = cv / f"fold_{fold}"
        calibrated = where / "calibrated.ckpt"
        if not calibrated.is_file():
            run(
                "speech-gru", "calibrate", "--checkpoint", str(where / "checkpoints" / "best.ckpt"),
                "--clips", str(data), "--split", "training", "--target-fa",
                f"{args.target_fa:g}", "--averages", AVERAGE, "--out", str(calibrated),
            )  # fmt: skip
        clips = []
        for i, root in enumerate(args.data):
            report = where / f"evaluation_{i}" / "evaluation.json"
            if not report.is_file():
                run(
                    "speech-gru", "evaluate", str(root), "--checkpoint", str(calibrated),
                    "--split", "testing", "--out", str(report.parent),
                )  # fmt: skip
            clips.append(json.loads(report.read_text()))
        stream = where / "stream.json"
        if not stream.is_file():
            run(
                "speech-gru", "evaluate-stream", "--checkpoint", str(calibrated),
                "--clips", *map(str, args.data), "--split", "testing",
                "--minutes", f"{args.minutes:g}", "--seed", str(fold), "--sweep",
                "--json", str(stream),
            )  # fmt: skip
        folds.append(fold_figures(clips, json.loads(stream.read_text())))
    summary = pool_folds(folds)
    (cv / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(summary_table(summary), flush=True)
    return [
        json.loads((cv / f"fold_{fold}" / "stream.json").read_text()) for fold in range(args.folds)
    ]


def cross_validated_point(streams: Sequence[dict], target_fa: float) -> OperatingPoint:
    """The shipped operating point, chosen on voices the models never heard: the folds'
    DET curves (one sweep of thresholds each, at the same averaging) pooled by threshold,
    and the lowest threshold whose false alarms over all the recordings' hours stay within
    ``target_fa`` an hour. Calibrating on the audio a model trained on instead picks a
    threshold that its scores on unseen voices exceed far more often.

    Raises:
        ValueError: the folds' recordings were scored with different detector settings.
    """
    from speech_gru.runtime.checkpoint import OperatingPoint

    settings = {(s["detector"]["average_s"], s["detector"]["hop_s"], s["detector"]["refractory_s"])
                for s in streams}  # fmt: skip
    if len(settings) != 1:
        raise ValueError(
            f"the folds' recordings differ in averaging, hop or refractory: {settings}"
        )
    (average_s, hop_s, refractory_s), *_ = settings
    seconds = sum(s["duration_s"] for s in streams)
    pooled: dict[float, dict[str, int]] = {}
    for stream in streams:
        for row in stream["det"][DECISION]:
            total = pooled.setdefault(row["threshold"], {"hits": 0, "keywords": 0, "fa": 0})
            total["hits"] += row["hits"]
            total["keywords"] += row["keywords"]
            total["fa"] += row["false_alarms"]
    within = [t for t, row in pooled.items() if row["fa"] * 3600 / seconds <= target_fa]
    if not within:
        raise ValueError(f"no threshold kept false alarms within {target_fa:g}/h")
    threshold = min(within)
    row = pooled[threshold]
    return OperatingPoint(
        threshold=threshold, average_s=average_s, refractory_s=refractory_s, hop_s=hop_s,
        target_fa_per_hour=target_fa, negative_s=seconds, false_alarms=row["fa"],
        source=f"{len(streams)}-fold cross-validation: streaming recordings of the real "
        "speakers each fold's model never heard (keywords and other words at 5-20 dB over "
        "real noise), pooled",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        hit_rate=row["hits"] / row["keywords"],
    )  # fmt: skip


def fold_figures(clips: Sequence[dict], stream: dict) -> dict:
    """One fold's counts: clips right (all, keywords) and the streaming recording's hits,
    false alarms (on other words), hours, and the best hit rates within 1 and 5 false
    alarms an hour on its DET curve."""

    def best_within(target: str) -> float:
        point = stream["comparison"][DECISION]["operating_points"][target]
        return 0.0 if point is None else 1.0 - point["miss_rate"]

    keyword_clips = [sum(r["support"] for r in c["per_class"] if not r["label"].startswith("_"))
                     for c in clips]  # fmt: skip
    metrics = stream["metrics"]
    return {
        "clips": sum(c["total"] for c in clips),
        "clips_right": sum(round(c["accuracy"] * c["total"]) for c in clips),
        "keyword_clips": sum(keyword_clips),
        "keyword_clips_right": sum(
            round(c["keyword_accuracy"] * n) for c, n in zip(clips, keyword_clips, strict=True)
        ),
        "keywords": metrics["keywords"],
        "hits": metrics["hits"],
        "false_alarms": metrics["false_alarms"],
        "other_word_alarms": metrics["distractor_alarms"],
        "hours": metrics["duration_s"] / 3600,
        "best_within_1": best_within("1"),
        "best_within_5": best_within("5"),
        "median_latency_s": metrics["median_latency_s"],
    }


def pool_folds(folds: Sequence[dict]) -> dict:
    """Every fold's clips and recordings together (each clip scored once, by a model that
    never heard its speaker), with each fold's figures beside."""
    total = {key: sum(f[key] for f in folds) for key in folds[0]}
    hours = total["hours"]
    return {
        "folds": list(folds),
        "clip_accuracy": total["clips_right"] / total["clips"],
        "keyword_clip_accuracy": total["keyword_clips_right"] / total["keyword_clips"],
        "clips": total["clips"],
        "hit_rate": total["hits"] / total["keywords"],
        "false_alarms_per_hour": total["false_alarms"] / hours,
        "other_word_alarms_per_hour": total["other_word_alarms"] / hours,
        "keywords": total["keywords"],
        "hours": hours,
        "best_within_1": total["best_within_1"] / len(folds),
        "best_within_5": total["best_within_5"] / len(folds),
    }


def summary_table(summary: dict) -> str:
    """The cross-validated figures as a Markdown table, a row per fold and the pool."""
    rows = [
        "| fold | clips right | keyword clips right | hits at the operating point "
        "| false alarms/h (other words) | best hits within 1 / 5 FA/h |",
        "|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(summary["folds"]):
        rows.append(
            f"| {i} | {f['clips_right'] / f['clips']:.1%} of {f['clips']} "
            f"| {f['keyword_clips_right'] / f['keyword_clips']:.1%} "
            f"| {f['hits'] / f['keywords']:.1%} of {f['keywords']} "
            f"| {f['false_alarms'] / f['hours']:.1f} ({f['other_word_alarms'] / f['hours']:.1f}) "
            f"| {f['best_within_1']:.1%} / {f['best_within_5']:.1%} |"
        )
    s = summary
    rows.append(
        f"| all | {s['clip_accuracy']:.1%} of {s['clips']} | {s['keyword_clip_accuracy']:.1%} "
        f"| {s['hit_rate']:.1%} of {s['keywords']} | {s['false_alarms_per_hour']:.1f} "
        f"({s['other_word_alarms_per_hour']:.1f}) | {s['best_within_1']:.1%} / "
        f"{s['best_within_5']:.1%} |"
    )
    return "\n".join(rows)


def write_card(path: Path) -> Path:
    """Set the facts of the model file in its JSON card (labels, size, digest, parameters,
    operating point), keeping the card's other entries (description, figures)."""
    import json

    from speech_gru.runtime.checkpoint import load_checkpoint_model, read_checkpoint

    model, labels, _ = load_checkpoint_model(path)
    checkpoint = read_checkpoint(path)
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card.update(
        name=path.stem,
        labels=labels,
        parameters=sum(p.numel() for p in model.parameters()),
        bytes=path.stat().st_size,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        operating_point=checkpoint.get("operating_point"),
    )
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


if __name__ == "__main__":
    sys.exit(main())
