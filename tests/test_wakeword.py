"""``speech-gru wakeword``: a wake-phrase detector from its spelling (speech_gru/cli/wakeword.py):
refused phrases and folders in one line, the whole run on a tiny budget (window, ONNX,
card, stream, the API, resume), several phrases in one model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speech_gru.cli.main import main
from speech_gru.cli.wakeword import (
    CONFIG,
    Plan,
    choose_epochs,
    fit_flags,
    negative_words,
    starting_point,
)
from tests.helpers import require_espeak

CLI = [sys.executable, "-m", "speech_gru.cli"]


@pytest.mark.parametrize(
    ("phrase", "problem"),
    [
        ("", "bad phrase ''"),
        ("hey computer 2", "letters a-z only"),
        ("ok, nabu", "letters a-z only"),
        ("one two three four five six", "too many words"),
        ("supercalifragilisticexpialidocious antidisestablishment", "too long"),
    ],
)
def test_a_bad_phrase_is_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, phrase: str, problem: str
) -> None:
    out = tmp_path / "out"
    assert main(["wakeword", phrase, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and problem in err and "\n" not in err, err
    assert not out.exists()


def test_a_folder_of_other_files_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["wakeword", "hey computer", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not empty" in err and "\n" not in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_too_few_speakers_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["wakeword", "athena", "--out", str(tmp_path / "o"), "--speakers", "5"]) == 2
    assert "--speakers 5: at least" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "problem"),
    [("--takes", "0", "at least 1"), ("--minutes", "0", "greater than 0"),
     ("--target-fa", "-1", "greater than 0"), ("--epochs", "two", "not an integer"),
     ("--mid-sentence", "1.5", "must be in (0, 1]")],
)  # fmt: skip
def test_bad_numbers_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str, problem: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        main(["wakeword", "hey computer", "--out", str(out), flag, value])
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}: " in last and problem in last, last
    assert not out.exists()


def test_the_engines_asked_for_are_the_ones_synth_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import speech_gru.cli.wakeword as wakeword

    ran: list[list[str]] = []
    monkeypatch.setattr(wakeword, "_run", lambda command, what: ran.append(command))
    for engines in (None, ["espeak-ng", "kokoro"]):
        plan = Plan(["athena"], ["athena"], tmp_path / f"o{len(ran)}", engines=engines)
        (plan.work / "synth").mkdir(parents=True)  # as make() and synth would
        wakeword.synthesize(plan)
    assert "--engines" not in ran[0]  # synth's default
    assert ran[1][ran[1].index("--engines") + 1 :][:2] == ["espeak-ng", "kokoro"]
    with pytest.raises(SystemExit):
        main(["wakeword", "athena", "--out", str(tmp_path / "x"), "--engines", "espeak"])
    assert not (tmp_path / "x").exists()


def test_negatives_hold_the_phrase_parts_and_sound_alikes_but_never_the_phrase() -> None:
    plan = Plan(phrases=["hey computer"], labels=["hey_computer"], out=Path("unused"))
    words = negative_words(plan)
    assert {"hey", "computer"} <= set(words)
    assert any(w in words for w in ("commuter", "compute", "hey commuter"))
    assert "hey computer" not in words and len(words) == len(set(words))
    assert "yes" in words  # and common words beside them


def test_epochs_follow_the_budget() -> None:
    plan = Plan(phrases=["athena"], labels=["athena"], out=Path("unused"))
    assert choose_epochs(plan, clips=3000, seconds=600, rate=100) == 20
    assert choose_epochs(plan, clips=3000, seconds=60, rate=100) == 2  # at least two
    assert choose_epochs(plan, clips=300, seconds=6000, rate=100) == 30  # at most thirty
    plan.epochs = 3
    assert choose_epochs(plan, clips=3000, seconds=600, rate=100) == 3


def test_scratch_trains_the_init_models_architecture_from_random_weights(
    capsys: pytest.CaptureFixture,
) -> None:
    from speech_gru.runtime.bundled import bundled_model
    from speech_gru.runtime.checkpoint import read_checkpoint, stored_hyper_parameters
    from tests.helpers import print_config

    plan = Plan(phrases=["athena"], labels=["athena"], out=Path("unused"))
    assert starting_point(plan) == [
        "--model.init_from", "keywords12", "--model.freeze_encoder_epochs", "1"
    ]  # fmt: skip
    plan.scratch = True
    flags = starting_point(plan)
    assert "--model.init_from" not in flags and "--model.freeze_encoder_epochs" not in flags
    path = bundled_model().path
    shipped = stored_hyper_parameters(path, read_checkpoint(path))
    config = print_config(capsys, "--config", str(CONFIG), "--data.root", "x", *flags)["model"]
    for section in ("architecture", "features"):
        assert {k: config[section][k] for k in shipped[section]} == shipped[section]
    assert config["init_from"] is None


def test_takes_heard_mid_sentence_reach_the_recipes_data(capsys: pytest.CaptureFixture) -> None:
    from tests.helpers import print_config

    plan = Plan(phrases=["athena"], labels=["athena"], out=Path("unused"), mid_sentence=0.3)
    flags = fit_flags(plan)
    config = print_config(capsys, "--config", str(CONFIG), "--data.root", "x", *flags)
    assert config["data"]["context_prob"] == 0.3
    assert config["model"]["init_from"] == "keywords12"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_two_phrases_from_spelling_to_a_model_that_streams(tmp_path: Path) -> None:
    require_espeak()
    out = tmp_path / "wake"
    before = set(tmp_path.iterdir())
    args = ["wakeword", "hey computer", "athena", "--out", str(out), "--speakers", "30",
            "--epochs", "1", "--minutes", "5", "--target-fa", "20"]  # fmt: skip
    made = _run(*args)
    assert made.returncode == 0, made.stderr[-3000:] + made.stdout[-3000:]
    assert set(tmp_path.iterdir()) - before == {out}  # nothing outside --out
    for step in range(1, 6):
        assert f"step {step}/5" in made.stdout
    assert "speech-gru stream --checkpoint" in made.stdout  # the next command

    card = json.loads((out / "model.json").read_text())
    assert set(card["labels"]) == {"hey_computer", "athena", "_unknown_", "_silence_"}
    assert 1.0 <= card["window_s"] <= 2.0
    assert card["operating_point"]["target_fa_per_hour"] == 20
    assert "hey computer" in (out / "model.md").read_text()

    from speech_gru.cli.api import Spotter
    from speech_gru.runtime.factory import load_model

    for path in (out / "model.ckpt", out / "model.onnx"):
        classifier = load_model(path)
        assert classifier.window_s == pytest.approx(card["window_s"])
        assert {"hey_computer", "athena"} <= set(classifier.labels)
    spotter = Spotter.load(out / "model.ckpt")
    assert spotter.detector_config().window_s == pytest.approx(card["window_s"])

    # stream takes it like any other model: a synthetic take streamed from a file
    take = next((out / "work" / "synth" / "hey_computer").glob("*.wav"))
    streamed = _run("stream", "--checkpoint", str(out / "model.onnx"), "--input", str(take))
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    assert "reading" in streamed.stderr and "Traceback" not in streamed.stderr

    # a re-run resumes: every step's output is there, nothing is made again
    again = _run(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "synthesized already" in again.stdout and "trained already" in again.stdout
    # another phrase into the same folder is refused, and the model is kept
    other = _run("wakeword", "amelia", "--out", str(out), "--speakers", "30")
    assert other.returncode == 2 and "holds a wake-word run for hey_computer" in other.stderr
    assert (out / "model.ckpt").is_file()


def test_real_negatives_are_cut_to_one_window_each(tmp_path: Path) -> None:
    import soundfile as sf

    from speech_gru.cli.wakeword import cut_negatives

    speech = tmp_path / "speech"
    speech.mkdir()
    rng = np.random.default_rng(0)
    sf.write(speech / "long.wav", rng.normal(0, 0.1, 48000).astype(np.float32), 16000)
    sf.write(speech / "stereo.wav", rng.normal(0, 0.1, (8000, 2)).astype(np.float32), 16000)
    (speech / "notes.wav").write_text("not audio")
    data = tmp_path / "data"
    assert cut_negatives([speech], data, window_s=1.5) == 2
    pieces = sorted((data / "_unknown_").glob("*.wav"))
    assert len(pieces) == 2
    assert all(sf.info(p).frames == 24000 and sf.info(p).channels == 1 for p in pieces)
    assert cut_negatives([speech], data, window_s=1.5) == 0  # there already
    # the names (each a speaker, so folds and splits) do not depend on where the folder is
    elsewhere = tmp_path / "moved" / "speech"
    shutil.copytree(speech, elsewhere)
    again = tmp_path / "again"
    assert cut_negatives([elsewhere], again, window_s=1.5) == 2
    assert [p.name for p in sorted((again / "_unknown_").glob("*.wav"))] == [p.name for p in pieces]
    shutil.rmtree(data)


def test_your_takes_all_train_whatever_their_speaker_id(tmp_path: Path) -> None:
    import soundfile as sf

    from speech_gru.cli.wakeword import OWN_COPIES, link_own_takes
    from speech_gru.train.corpus import SplitRule

    takes = tmp_path / "mine" / "hey_computer"
    takes.mkdir(parents=True)
    for i in range(4):  # one person: one speaker id, which alone could hold every take out
        sf.write(takes / f"0badcafe_nohash_{i}.wav", np.zeros(16000, np.float32), 16000)
    data = tmp_path / "data"
    assert link_own_takes(tmp_path / "mine", ["hey_computer"], data) == 4
    linked = sorted((data / "hey_computer").iterdir())
    assert len(linked) == 4 * OWN_COPIES
    assert {SplitRule()(p) for p in linked} == {"training"}
    assert {p.resolve() for p in linked} == {p.resolve() for p in takes.iterdir()}
