"""A wake-phrase detector from its spelling: ``speech-gru wakeword "hey computer" --out DIR``.

Each step is one of the project's own commands, run in turn and skipped when its output is
there, so a re-run with the same phrases resumes where the last one stopped:

1. **synth**: synthetic speakers (espeak-ng, flite, festival; each with its own pitch,
   speed, vocal tract and room) say each phrase, and as ``_unknown_`` its hard negatives
   (``speech_gru.train.confusables``: the phrase's parts alone, words and phrases that
   sound alike, from CMUdict) and common words.
2. **data**: ``DIR/work/data`` links the synthetic clips, the user's own takes
   (``--recordings``, folders that ``speech-gru record`` wrote) and one window of each
   file of real other speech (``--negatives``) as ``_unknown_``.
3. **train**: the recipe (``conf/folder.yaml``) from the bundled model's features and
   encoder, a new head for ``PHRASE..., _unknown_, _silence_``, the window the phrase
   needs (``window_for`` of the synthetic takes' spoken lengths), for as many epochs as
   the time budget allows (measured on this machine before training starts).
4. **calibrate**: the operating point for ``--target-fa`` false alarms per hour on the
   keyword-free audio of every split (and the ``--negatives`` recordings).
5. **write**: ``DIR/model.ckpt`` (slim, calibrated), ``DIR/model.onnx``, and the card
   ``DIR/model.json`` + ``DIR/model.md`` with the figures measured on the way.

``stream``, ``serve``, ``transcribe`` and ``Spotter.load`` take ``DIR/model.ckpt`` or
``DIR/model.onnx`` like any other model; several phrases given at once make one model
that hears each of them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speech_gru.cli.options import CliError

CONFIG = Path(__file__).resolve().parents[1] / "train" / "conf" / "wakeword.yaml"
"""Training settings (the recipe's folder.yaml, less the architecture: from --init-from)."""
CALIBRATE_RESERVE_S = 150.0
"""Seconds of the budget kept for calibration, export and the card after training."""
NEGATIVES_PER_PHRASE = 40
"""Hard negatives synthesized for each phrase (parts, sound-alikes)."""
COMMON_WORDS = 40
"""Common words added to the hard negatives."""
OWN_COPIES = 5
"""Times each of the user's takes trains (each copy augmented on its own): 20 takes
weigh about a third as much as the synthetic speakers' 300."""


@dataclass
class Plan:
    """What one ``wakeword`` run makes, and how.

    Attributes:
        phrases: the phrases as typed ("hey computer").
        labels: their labels (``hey_computer``): folder names and model outputs.
        out: the output folder.
        speakers: synthetic speakers.
        takes: takes of each phrase per speaker.
        negatives_per_speaker: other words and phrases each speaker says.
        minutes: time budget of the whole run.
        target_fa: false alarms per hour the operating point is calibrated for.
        recordings: folders of the user's own takes (``record`` output).
        negatives: folders or files of real speech without the phrases.
        noise: folder of background recordings (default: generated noise).
        init_from: the model whose features and encoder start training.
        scratch: start from random weights in ``init_from``'s architecture and features.
        mid_sentence: share of the phrase's training takes heard mid-sentence (another
            word's end just before, another's start just after; ``data.context_prob``).
        epochs: training epochs (None: as many as the budget allows, at most 30).
        seed: the seed of synthesis and training.
        jobs: clips synthesized at once.
        engines: synth's engines (None: its default).
        command: the command line that made it, for the card.
    """

    phrases: list[str]
    labels: list[str]
    out: Path
    speakers: int = 150
    takes: int = 2
    negatives_per_speaker: int = 6
    minutes: float = 15.0
    target_fa: float = 5.0
    recordings: list[Path] = field(default_factory=list)
    negatives: list[Path] = field(default_factory=list)
    noise: Path | None = None
    init_from: str = "keywords12"
    scratch: bool = False
    mid_sentence: float = 0.0
    epochs: int | None = None
    seed: int = 0
    jobs: int = 2
    engines: list[str] | None = None
    command: str = ""

    @property
    def work(self) -> Path:
        return self.out / "work"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "speech_gru.cli", *args]


def _run(command: list[str], what: str) -> None:
    cli = command[1:3] == ["-m", "speech_gru.cli"]
    shown = shlex.join(["speech-gru", *command[3:]] if cli else command)
    print(f"$ {shown}", flush=True)
    status = subprocess.run(command).returncode
    if status != 0:
        raise CliError(f"{what} failed (exit code {status}); its output is above")


class Clock:
    """Elapsed time of the run, and what is left of its budget."""

    def __init__(self, minutes: float) -> None:
        self.start = time.monotonic()
        self.budget_s = minutes * 60.0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    @property
    def left_s(self) -> float:
        return self.budget_s - self.elapsed_s

    def step(self, number: int, text: str) -> None:
        print(
            f"[{_minutes(self.elapsed_s)} of {_minutes(self.budget_s)}] step {number}/5: {text}",
            flush=True,
        )


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def check_out(plan: Plan) -> None:
    """``--out`` must be new, empty, or an earlier run for the same phrases."""
    if plan.out.exists() and not plan.out.is_dir():
        raise CliError(f"{plan.out}: exists and is not a folder (--out)")
    stamp = plan.work / "phrases.json"
    if stamp.is_file():
        earlier = json.loads(stamp.read_text()).get("labels")
        if earlier != plan.labels:
            raise CliError(
                f"{plan.out}: holds a wake-word run for {', '.join(earlier or [])}, not "
                f"{', '.join(plan.labels)}; give a new --out"
            )
    elif plan.out.is_dir() and any(plan.out.iterdir()):
        raise CliError(f"{plan.out}: folder is not empty and not a wakeword run; give a new --out")
    plan.work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"phrases": plan.phrases, "labels": plan.labels}) + "\n")


def negative_words(plan: Plan) -> list[str]:
    """The other words and phrases the synthetic speakers say: each phrase's hard
    negatives, then common words; none that is one of the phrases."""
    from speech_gru.train.confusables import hard_negatives
    from speech_gru.train.synth import UNKNOWN_WORDS

    words: list[str] = []
    for phrase in plan.phrases:
        words += hard_negatives(phrase, limit=NEGATIVES_PER_PHRASE)
    words += list(UNKNOWN_WORDS[:COMMON_WORDS])
    taken = {p.lower() for p in plan.phrases}
    return [w for w in dict.fromkeys(words) if w.lower() not in taken]


def synthesize(plan: Plan) -> Path:
    """Step 1: ``speech-gru synth`` of the phrases and their negatives (resumable)."""
    synth = plan.work / "synth"
    if (synth / "synth.json").is_file() and (synth / ".done").is_file():
        print(f"{synth}: synthesized already", flush=True)
        return synth
    words = negative_words(plan)
    (plan.work / "negatives.txt").write_text("\n".join(words) + "\n")
    print(
        f"{len(words)} other words and phrases as _unknown_ (listed in "
        f"{plan.work / 'negatives.txt'}): {', '.join(words[:12])}, ...",
        flush=True,
    )
    _run(
        _cli(
            "synth", *plan.phrases, "--out", str(synth), "--speakers", str(plan.speakers),
            "--takes", str(plan.takes), "--unknown", *words,
            "--unknown-per-speaker", str(plan.negatives_per_speaker),
            "--seed", str(plan.seed), "--jobs", str(plan.jobs),
            *(["--noise", str(plan.noise)] if plan.noise else []),
            *(["--engines", *plan.engines] if plan.engines else []),
        ),
        "speech-gru synth",
    )  # fmt: skip
    (synth / ".done").write_text("")
    return synth


def phrase_window(plan: Plan, synth: Path) -> float:
    """The model window for the phrases: ``window_for`` the synthetic takes' spoken
    lengths (the longest phrase decides)."""
    from speech_gru.train.synth import spoken_durations, window_for

    durations = [d for phrase in plan.phrases for d in spoken_durations(synth, phrase)]
    if not durations:
        raise CliError(f"{synth}: no synthetic takes of {', '.join(plan.phrases)}")
    return window_for(durations)


def link_clips(
    source: Path, target: Path, prefix: str = "", keep: Callable[[Path], bool] | None = None
) -> int:
    """Link every clip of ``source/LABEL/*.wav`` (those ``keep`` accepts, when given) into
    ``target/LABEL/`` (names prefixed, so two sources cannot collide); the number linked."""
    count = 0
    for clip in sorted(source.glob("*/*.wav")):
        dest = target / clip.parent.name / f"{prefix}{clip.name}"
        if (keep is not None and not keep(clip)) or dest.exists() or dest.is_symlink():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(clip.resolve())
        count += 1
    return count


def link_own_takes(folder: Path, labels: Sequence[str], data: Path) -> int:
    """Link each of the user's takes (``folder/LABEL/*.wav``) into ``data/LABEL/``
    ``OWN_COPIES`` times, each copy under a speaker id that the recipe's split (10 %
    validation, 10 % test, by a hash of the id) sends to training: a person's takes share
    one speaker id, which could otherwise hold them all out. The number of takes linked."""
    from speech_gru.train.corpus import SplitRule

    rule = SplitRule()
    count = 0
    for label in labels:
        for take in sorted((folder / label).glob("*.wav")):
            key = hashlib.sha1(str(take.resolve()).encode()).hexdigest()[:8]
            for copy in range(OWN_COPIES):
                speaker = next(
                    name for k in range(1000)
                    if rule.split_of_speaker(name := f"own{key}c{copy}k{k}") == "training"
                )  # fmt: skip
                dest = data / label / f"{speaker}_nohash_0.wav"
                if not (dest.exists() or dest.is_symlink()):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.symlink_to(take.resolve())
            count += 1
    return count


def cut_negatives(sources: Sequence[Path], target: Path, window_s: float) -> int:
    """One window (the loudest) of each audio file under ``sources`` into
    ``target/_unknown_``; each file its own speaker, named by a hash of the source folder's
    name and the file's path inside it (the same on every machine, so speaker splits and
    folds are too). Files that are not audio are named on stderr and skipped."""
    from speech_gru.core.audio import (
        SAMPLE_RATE,
        AudioError,
        load_audio,
        loudest_window,
        write_wav,
    )
    from speech_gru.train.corpus import audio_files

    count = 0
    window = round(window_s * SAMPLE_RATE)
    for source in sources:
        single = source.is_file()
        files = [source] if single else audio_files(source)
        for path in files:
            where = path.name if single else path.relative_to(source).as_posix()
            key = hashlib.sha1(f"{source.name}/{where}".encode()).hexdigest()[:10]
            dest = target / "_unknown_" / f"real{key}_nohash_0.wav"
            if dest.exists():
                continue
            try:
                wave = load_audio(path)
            except AudioError as err:
                print(f"skipped: {err}", file=sys.stderr)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_wav(dest, loudest_window(wave, window))
            count += 1
    return count


def assemble(plan: Plan, synth: Path, window_s: float) -> Path:
    """Step 2: the training folder: synthetic clips, the user's takes, real negatives."""
    data = plan.work / "data"
    linked = link_clips(synth, data)
    own = 0
    for folder in plan.recordings:
        found = [folder / label for label in plan.labels if (folder / label).is_dir()]
        if not found:
            raise CliError(
                f"{folder}: no {' or '.join(plan.labels)} folder of takes (--recordings takes "
                "the folder that speech-gru record wrote)"
            )
        own += link_own_takes(folder, plan.labels, data)
    cut = cut_negatives(plan.negatives, data, window_s)
    print(
        f"{data}: {linked} synthetic clips, {own} of your takes, {cut} windows of other speech",
        flush=True,
    )
    return data


def model_path(name: str) -> Path:
    """The checkpoint file ``name`` (a path, or a bundled model's name)."""
    from speech_gru.runtime.bundled import bundled_model

    return Path(name) if Path(name).is_file() else bundled_model(name).path


def starting_point(plan: Plan) -> list[str]:
    """The recipe flags training starts from: ``init_from``'s features and encoder, the
    head alone for the first epoch; with ``scratch``, its architecture and features
    settings and random weights."""
    if not plan.scratch:
        return ["--model.init_from", plan.init_from, "--model.freeze_encoder_epochs", "1"]
    from speech_gru.train.lit import init_checkpoint_config

    adopted = init_checkpoint_config(model_path(plan.init_from))  # what --model.init_from takes
    return [
        flag
        for section, settings in adopted.items()
        for key, value in settings.items()
        if value is not None
        for flag in (f"--model.{section}.{key}", str(value))
    ]


def fit_flags(plan: Plan) -> list[str]:
    """The plan's own recipe flags: where training starts, and the share of takes heard
    mid-sentence."""
    return [*starting_point(plan), "--data.context_prob", f"{plan.mid_sentence:g}"]


def measure_rate(init_from: str, window_s: float, batch: int = 64) -> float:
    """Training clips per second on this machine: a few training steps of the model the
    run trains (forward and backward), with a margin for loading, augmentation and
    validation."""
    import torch

    from speech_gru.runtime.checkpoint import load_checkpoint_model

    model, _, _ = load_checkpoint_model(model_path(init_from))
    model.train()
    waves = torch.randn(batch, round(window_s * 16000)) * 0.1
    optimizer = torch.optim.AdamW(model.parameters())
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        loss = model(waves).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - start)
    return 0.6 * batch / min(timings[1:])


def choose_epochs(plan: Plan, clips: int, seconds: float, rate: float) -> int:
    """Epochs that fit ``seconds`` at ``rate`` clips per second (at least 2, at most 30),
    unless ``plan.epochs`` fixes them."""
    if plan.epochs is not None:
        return plan.epochs
    return max(2, min(30, math.floor(seconds * rate / max(1, clips))))


def count_clips(data: Path) -> int:
    return sum(1 for _ in data.glob("*/*.wav"))


def train(plan: Plan, data: Path, window_s: float, clock: Clock) -> Path:
    """Step 3: the recipe's ``fit`` from the bundled encoder; the best checkpoint."""
    run_dir = plan.work / "run"
    best = run_dir / "checkpoints" / "best.ckpt"
    if best.is_file() and (run_dir / "results.json").is_file():
        print(f"{best}: trained already", flush=True)
        return best
    seconds = max(60.0, clock.left_s - CALIBRATE_RESERVE_S)
    clips = count_clips(data)
    rate = measure_rate(plan.init_from, window_s)
    epochs = choose_epochs(plan, clips, seconds, rate)
    print(
        f"training on {clips} clips ({window_s:g} s windows, ~{rate:.0f} clips/s here): "
        f"{epochs} epochs, about {_minutes(epochs * clips / rate)} (stops at "
        f"{_minutes(seconds)} whatever happens)",
        flush=True,
    )
    _run(
        [
            sys.executable, "-m", "speech_gru.train.training", "fit", "--config", str(CONFIG),
            "--data.root", str(data),
            "--data.labels", ",".join([*plan.labels, "_unknown_", "_silence_"]),
            *fit_flags(plan),
            "--model.window_s", f"{window_s:g}",
            "--trainer.max_epochs", str(epochs),
            "--trainer.max_time", f"00:00:{int(seconds) // 60:02d}:{int(seconds) % 60:02d}",
            "--run_dir", str(run_dir), "--seed_everything", str(plan.seed),
        ],
        "training",
    )  # fmt: skip
    if not best.is_file():
        raise CliError(f"{run_dir}: training wrote no best.ckpt")
    return best


def calibrate(plan: Plan, best: Path, data: Path) -> Path:
    """Step 4: the operating point for ``plan.target_fa`` on the keyword-free audio."""
    calibrated = plan.work / "calibrated.ckpt"
    if calibrated.is_file():
        return calibrated
    _run(
        _cli(
            "calibrate", "--checkpoint", str(best), "--clips", str(data), "--split", "all",
            "--target-fa", f"{plan.target_fa:g}", "--seed", str(plan.seed),
            "--out", str(calibrated),
        ),
        "speech-gru calibrate",
    )  # fmt: skip
    return calibrated


def write_model(plan: Plan, calibrated: Path, window_s: float, clock: Clock) -> Path:
    """Step 5: ``model.ckpt`` (slim), ``model.onnx`` and the card."""
    from speech_gru.runtime.checkpoint import slim_checkpoint

    model = slim_checkpoint(calibrated, plan.out / "model.ckpt")
    onnx = plan.out / "model.onnx"
    if importlib.util.find_spec("onnx") is None:
        print("model.onnx not written: ONNX export needs pip install 'speech-gru[onnx]'")
    else:
        _run(
            _cli("export", "--checkpoint", str(model), "--format", "onnx", "--out", str(onnx)),
            "speech-gru export",
        )
    write_card(plan, model, window_s, clock.elapsed_s / 60)
    return model


def write_card(plan: Plan, model: Path, window_s: float, minutes: float) -> Path:
    """``model.json`` and ``model.md`` beside ``model``: what it hears, how it was made
    and what was measured on the way (the training run's test split, calibration)."""
    from speech_gru.runtime.checkpoint import load_checkpoint_model, read_checkpoint

    _, labels, _ = load_checkpoint_model(model)
    point = read_checkpoint(model).get("operating_point") or {}
    results = plan.work / "run" / "results.json"
    tested = json.loads(results.read_text()) if results.is_file() else {}
    card = {
        "name": plan.out.name,
        "phrases": plan.phrases,
        "labels": list(labels),
        "window_s": window_s,
        "bytes": model.stat().st_size,
        "operating_point": point,
        "synthetic_test_accuracy": tested.get("test/acc"),
        "synthetic_test_clips": tested.get("test/clips"),
        "speakers": plan.speakers,
        "recordings": [str(p) for p in plan.recordings],
        "negatives": [str(p) for p in plan.negatives],
        "init_from": plan.init_from,
        "scratch": plan.scratch,
        "mid_sentence": plan.mid_sentence,
        "minutes": round(minutes, 1),
        "command": plan.command
        or shlex.join(["speech-gru", "wakeword", *plan.phrases, "--out", str(plan.out)]),
    }
    (plan.out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    (plan.out / "model.md").write_text(card_text(card))
    return plan.out / "model.md"


def card_text(card: dict) -> str:
    """The model card in words: what it hears, how it was made, what was measured, and
    what it is not."""
    point = card.get("operating_point") or {}
    accuracy = card.get("synthetic_test_accuracy")
    fa = point.get("false_alarms")
    hours = (point.get("negative_s") or 0.0) / 3600
    hit = point.get("hit_rate")
    lines = [
        f"# Wake-phrase model: {', '.join(card['phrases'])}",
        "",
        f"Labels: {', '.join(card['labels'])}. Window {card['window_s']:g} s. "
        f"{card['bytes'] / 1e6:.2f} MB. Made by `{card['command']}` in {card['minutes']} "
        "minutes.",
        "",
        "## How it was made",
        f"- {card['speakers']} synthetic speakers (espeak-ng, flite, festival voices, each "
        "with its own pitch, speed, vocal tract and room) said the phrase; its parts, words "
        "and phrases that sound like it (CMUdict) and common words were said as `_unknown_`.",
        f"- Your takes: {', '.join(card['recordings']) or 'none'}. Real other speech: "
        f"{', '.join(card['negatives']) or 'none'}.",
        (
            f"- Trained from random weights, in the architecture of `{card['init_from']}`."
            if card.get("scratch")
            else f"- Trained from the features and encoder of `{card['init_from']}`."
        ),
        "",
        "## Measured",
        "- Clip accuracy on held-out synthetic speakers: "
        + (f"{accuracy:.3f} ({card['synthetic_test_clips']:.0f} clips)." if accuracy else "-"),
        f"- Operating point: threshold {point.get('threshold')}, average "
        f"{point.get('average_s')} s, for {point.get('target_fa_per_hour')} false alarms/h: "
        f"{fa} false alarms on {hours:.2f} h of keyword-free audio"
        + (f", {hit:.1%} of phrase clips heard." if hit is not None else "."),
        "",
        "## What it is not",
        "- Synthetic voices are not people: these figures flatter it. Measure it on real "
        "recordings (`speech-gru evaluate-stream --clips DIR ...`) and add 20 takes of your "
        "own voice (`speech-gru record`, then `--recordings`) for a detector that hears you.",
        "- Not a speaker check: anyone who says the phrase wakes it.",
        "",
    ]
    return "\n".join(lines)


def make(plan: Plan) -> Path:
    """Run every step; the written ``model.ckpt``."""
    clock = Clock(plan.minutes)
    check_out(plan)
    clock.step(1, f"synthetic voices say {', '.join(repr(p) for p in plan.phrases)} and "
               "other words")  # fmt: skip
    synth = synthesize(plan)
    window_s = phrase_window(plan, synth)
    clock.step(2, f"training folder (window {window_s:g} s)")
    data = assemble(plan, synth, window_s)
    clock.step(3, "training")
    best = train(plan, data, window_s, clock)
    clock.step(4, f"calibrating for {plan.target_fa:g} false alarms/h")
    calibrated = calibrate(plan, best, data)
    clock.step(5, "writing the model, its ONNX export and its card")
    model = write_model(plan, calibrated, window_s, clock)
    print(f"done in {_minutes(clock.elapsed_s)}: {model} (card {plan.out / 'model.md'})")
    print("next:")
    print(f"  speech-gru stream --checkpoint {model}")
    print(f"  speech-gru serve --checkpoint {model}")
    print(f"  speech-gru transcribe --checkpoint {plan.out / 'model.onnx'} FILE.wav")
    return model


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))
