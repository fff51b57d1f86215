"""The bundled model (speech_gru/models): the shipped file matches its card, and every
command that takes --checkpoint, and Spotter.load(), uses it when no model is named."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speech_gru import Spotter
from speech_gru.cli.main import main
from speech_gru.core.audio import SAMPLE_RATE, write_wav
from speech_gru.runtime.bundled import DEFAULT, MODELS, bundled_model, bundled_models, is_bundled
from speech_gru.runtime.checkpoint import load_checkpoint_model, read_checkpoint
from tests.helpers import write_tone

MODEL = MODELS / f"{DEFAULT}.ckpt"
BUNDLED_LINE = f"model: the bundled {DEFAULT}"
TWELVE = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def test_the_default_model_ships_with_its_cards() -> None:
    model = bundled_model()
    assert model.path == MODEL and model.path.is_file()
    assert model.card_text.is_file()
    assert DEFAULT in [m.name for m in bundled_models()]
    assert model.path.stat().st_size <= 2_000_000  # the shipped file's budget


def test_the_shipped_file_matches_its_card() -> None:
    model = bundled_model()
    card = model.card
    network, labels, _ = load_checkpoint_model(model.path)
    checkpoint = read_checkpoint(model.path)
    assert labels == card["labels"]
    assert set(TWELVE) <= set(labels) and {"_unknown_", "_silence_"} <= set(labels)
    assert card["parameters"] == sum(p.numel() for p in network.parameters())
    assert card["bytes"] == model.path.stat().st_size
    assert card["sha256"] == hashlib.sha256(model.path.read_bytes()).hexdigest()
    assert card["operating_point"] == checkpoint["operating_point"]  # it is calibrated
    assert {"optimizer_states", "lr_schedulers", "loops"}.isdisjoint(checkpoint)  # slim
    for figure in card["figures"]:
        assert figure["what"] and figure["value"] and figure["command"]


def test_models_lists_the_bundled_model(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"{DEFAULT} (default)" in out and "yes no up down" in out
    assert main(["models", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert cards[0]["name"] == DEFAULT and Path(cards[0]["path"]) == MODEL


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-second clip to label (a tone: what the model calls it does not matter here)."""
    return write_tone(tmp_path_factory.mktemp("clips") / "tone.wav", seconds=1.0)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speech_gru.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip


def test_info_without_a_checkpoint_describes_the_bundled_model() -> None:
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{BUNDLED_LINE} ({MODEL}); --checkpoint FILE uses another"
    ]
    card = json.loads(result.stdout)
    assert card["labels"] == bundled_model().card["labels"]


def test_transcribe_and_stream_use_the_bundled_model(clip: Path, tmp_path: Path) -> None:
    talk = tmp_path / "talk.wav"
    write_wav(talk, np.zeros(3 * SAMPLE_RATE, dtype=np.float32))
    for args in (["transcribe", str(clip)], ["stream", "--input", str(talk)]):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        assert BUNDLED_LINE in result.stderr, args


@pytest.mark.slow
def test_every_command_that_takes_a_model_uses_the_bundled_one(
    clip: Path, tmp_path: Path, unseen_dir: Path
) -> None:
    """export, explain, evaluate, evaluate-stream, noise-robustness and calibrate (to a
    copy) run with no --checkpoint; evaluate's report goes to the current folder, since
    the model's own folder belongs to the installed package."""
    out = tmp_path / "out"
    out.mkdir()
    noise = tmp_path / "room.wav"
    write_wav(noise, np.random.default_rng(0).normal(0, 0.01, 20 * SAMPLE_RATE).astype(np.float32))
    commands = [
        ["export", "--format", "onnx", "--out", str(out / "kws.onnx")],
        ["explain", str(clip), "--out", str(out / "explain.png")],
        ["evaluate", str(unseen_dir)],
        ["evaluate-stream", "--clips", str(unseen_dir), "--split", "all", "--minutes", "0.5"],
        ["noise-robustness", "--data", str(unseen_dir), "--split", "all", "--snr", "10"],
        ["calibrate", "--negatives", str(noise), "--target-fa", "10",
         "--out", str(out / "calibrated.ckpt")],
    ]  # fmt: skip
    for args in commands:
        result = run_cli(*args, cwd=out)
        assert BUNDLED_LINE in result.stderr, (args, result.stderr)
        assert result.returncode == 0, (args, result.stderr)
    assert (out / "kws.onnx").is_file() and (out / "explain.png").is_file()
    assert (out / "evaluation.json").is_file() and (out / "calibrated.ckpt").is_file()
    assert not list(MODELS.glob("*.bak")) and not list(MODELS.glob("evaluation*"))


def test_held_out_splits_of_a_model_that_heard_every_speaker_are_refused(
    unseen_dir: Path, tmp_path: Path
) -> None:
    """The bundled model trained on every speaker of its data: asked for its test
    speakers, evaluate and evaluate-stream say so in one line and how to score a folder."""
    for args in (["evaluate", str(unseen_dir), "--split", "testing"],
                 ["evaluate-stream", "--clips", str(unseen_dir), "--minutes", "0.5"],
                 ["noise-robustness", "--data", str(unseen_dir), "--snr", "10"],
                 ["calibrate", "--clips", str(unseen_dir), "--split", "validation",
                  "--target-fa", "10", "--out", str(tmp_path / "c.ckpt")]):  # fmt: skip
        result = run_cli(*args, cwd=tmp_path)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2, (args, result.stderr)
        assert len(errors) == 1 and "speakers)" in errors[0], result.stderr
        assert "--split all" in errors[0] and "Traceback" not in result.stderr


def test_calibrate_never_changes_the_bundled_model_in_place(tmp_path: Path) -> None:
    before = MODEL.read_bytes()
    result = run_cli("calibrate", "--negatives", str(tmp_path), "--target-fa", "1")
    assert result.returncode == 2
    assert "not changed in place; give --out FILE" in result.stderr.strip().splitlines()[-1]
    assert MODEL.read_bytes() == before


def test_spotter_load_without_a_path_is_the_bundled_model(
    clip: Path, capsys: pytest.CaptureFixture
) -> None:
    spotter = Spotter.load()
    assert BUNDLED_LINE in capsys.readouterr().err
    assert spotter.labels == bundled_model().card["labels"]
    assert spotter.operating_point is not None
    assert len(spotter.classify(clip, top_k=3)) == 3


def test_is_bundled_knows_the_package_folder(tmp_path: Path) -> None:
    assert is_bundled(MODEL)
    assert not is_bundled(tmp_path / f"{DEFAULT}.ckpt")


def bundled_recipe():  # noqa: ANN201 - the recipe script as a module
    import importlib.util

    path = Path(__file__).parents[1] / "recipes" / "speech_commands" / "bundled.py"
    spec = importlib.util.spec_from_file_location("bundled_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipes_cross_validated_figures_pool_every_fold() -> None:
    """The card's figures: every held-out clip and keyword once (pooled counts, not a mean
    of the folds' rates), false alarms over the recordings' hours together."""
    recipe = bundled_recipe()

    def clips(right: int, total: int, keyword_right: int, keywords: int) -> dict:
        per_class = [{"label": "yes", "support": keywords}, {"label": "_unknown_",
                     "support": total - keywords}]  # fmt: skip
        return {"accuracy": right / total, "total": total, "keyword_accuracy":
                keyword_right / keywords, "per_class": per_class}  # fmt: skip

    def stream(hits: int, keywords: int, alarms: int, other: int, within: list) -> dict:
        pairs = zip("15", within, strict=True)
        points = {t: None if m is None else {"miss_rate": m} for t, m in pairs}
        metrics = {
            "keywords": keywords,
            "hits": hits,
            "false_alarms": alarms,
            "distractor_alarms": other,
            "duration_s": 1800.0,
            "median_latency_s": 0.3,
        }
        return {"metrics": metrics, "comparison": {"mean-then-threshold":
                {"operating_points": points}}}  # fmt: skip

    folds = [
        recipe.fold_figures([clips(90, 100, 40, 50)], stream(30, 100, 2, 1, [None, 0.5])),
        recipe.fold_figures(
            [clips(150, 200, 70, 100), clips(10, 10, 5, 5)], stream(90, 300, 4, 0, [0.8, 0.25])
        ),
    ]
    assert folds[1]["clips"] == 210 and folds[1]["keyword_clips_right"] == 75
    summary = recipe.pool_folds(folds)
    assert summary["clip_accuracy"] == pytest.approx(250 / 310)
    assert summary["keyword_clip_accuracy"] == pytest.approx(115 / 155)
    assert summary["hit_rate"] == pytest.approx(120 / 400)  # not the mean of 0.3 and 0.3
    assert summary["hours"] == pytest.approx(1.0)
    assert summary["false_alarms_per_hour"] == pytest.approx(6.0)
    assert summary["other_word_alarms_per_hour"] == pytest.approx(1.0)
    assert summary["best_within_1"] == pytest.approx((0.0 + 0.2) / 2)  # none within: 0
    assert summary["best_within_5"] == pytest.approx((0.5 + 0.75) / 2)
    table = recipe.summary_table(summary).splitlines()
    assert len(table) == 2 + 2 + 1 and table[-1].startswith("| all | 80.6% of 310 | 74.2% ")


def test_the_recipe_refuses_one_fold(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        bundled_recipe().main(["--data", "x", "--folds", "1"])
    assert "--folds must be 0 or at least 2" in capsys.readouterr().err


def test_the_recipe_synthesizes_with_the_shipped_models_engines_whatever_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = bundled_recipe()
    commands: list[tuple[str, ...]] = []

    class StopError(Exception):
        pass

    def first_step(*command: str) -> None:
        commands.append(command)
        raise StopError

    monkeypatch.setattr(recipe, "run", first_step)
    for extra in ([], ["--engines", "espeak-ng", "kokoro"]):
        with pytest.raises(StopError):
            recipe.main(["--data", str(tmp_path / "dev"), "--work", str(tmp_path / "w"), *extra])
    engines = [command[command.index("--engines") + 1 :] for command in commands]
    assert engines[0][: len(recipe.RULE_BASED)] == recipe.RULE_BASED
    assert "kokoro" not in engines[0] and engines[1][:2] == ("espeak-ng", "kokoro")
    assert all(command[:2] == ("speech-gru", "synth") for command in commands)


def test_the_shipped_model_never_hears_the_example_speakers(tmp_path: Path) -> None:
    recipe = bundled_recipe()
    assert recipe.example_speakers() == {"2005ca25", "5170b77f"}  # docs/examples
    data = tmp_path / "data"
    names = ["yes/aaaa1111_nohash_0.wav", "yes/bbbb2222_nohash_0.wav", "no/aaaa1111_nohash_1.wav",
             "_background_noise_/hum.wav"]  # fmt: skip
    for name in names:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        write_tone(data / name, 440.0)
    final = recipe.leave_out_speakers(data, tmp_path / "final", {"aaaa1111"})
    kept = sorted(p.relative_to(final).as_posix() for p in final.rglob("*.wav"))
    assert kept == ["_background_noise_/hum.wav", "yes/bbbb2222_nohash_0.wav"]
    kept_clip = final / "yes" / "bbbb2222_nohash_0.wav"
    assert kept_clip.resolve() == (data / "yes" / "bbbb2222_nohash_0.wav").resolve()
    assert recipe.leave_out_speakers(data, final, {"aaaa1111"}) == final  # again: unchanged


def test_the_shipped_threshold_is_chosen_on_the_folds_unseen_voices() -> None:
    """Pooled by threshold over the folds' recordings: the lowest threshold whose false
    alarms over all their hours stay within the target, with its pooled hit rate."""
    recipe = bundled_recipe()

    def report(rows: list[tuple[float, int, int]], average: float = 0.8) -> dict:
        det = [
            {"threshold": t, "hits": h, "keywords": 100, "false_alarms": fa} for t, h, fa in rows
        ]
        detector = {"average_s": average, "hop_s": 0.1, "refractory_s": 1.5}
        return {"duration_s": 1800.0, "detector": detector, "det": {recipe.DECISION: det}}

    # Fold A alone would allow 0.6 (2 in half an hour), fold B alone 0.8; pooled over the
    # hour, 0.6 gives 2 + 6 = 8 > 5 and 0.7 gives 1 + 4 = 5.
    folds = [report([(0.6, 80, 2), (0.7, 70, 1), (0.8, 60, 0)]),
             report([(0.6, 90, 6), (0.7, 85, 4), (0.8, 75, 2)])]  # fmt: skip
    point = recipe.cross_validated_point(folds, 5.0)
    assert point.threshold == 0.7 and point.average_s == 0.8 and point.refractory_s == 1.5
    assert point.false_alarms == 5 and point.negative_s == 3600.0 and point.fa_per_hour == 5.0
    assert point.hit_rate == pytest.approx(155 / 200)
    assert "cross-validation" in point.source
    with pytest.raises(ValueError, match="no threshold"):
        recipe.cross_validated_point(folds, 1.0)
    with pytest.raises(ValueError, match="differ"):
        recipe.cross_validated_point([folds[0], report([(0.6, 1, 0)], average=0.5)], 5.0)
