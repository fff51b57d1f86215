"""Training your own words: the folder checks before training, and ``model.init_from``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from speech_gru.core.labels import SILENCE, UNKNOWN
from speech_gru.core.model import ArchitectureConfig
from speech_gru.runtime.checkpoint import CheckpointError
from speech_gru.train.corpus import FolderSurvey
from speech_gru.train.data import DataError, SpeechCommandsDataModule
from speech_gru.train.lit import KeywordSpotter
from speech_gru.train.training import main
from tests.helpers import RECIPE_CONF, tone_folder

TONES = {"lights": 500.0, "music": 900.0, "other": 1400.0}
MY_LABELS = f"lights,music,{UNKNOWN},{SILENCE}"


@pytest.fixture(scope="module")
def my_words(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three word folders, 20 speakers each, as a user's own recordings would be laid out."""
    return tone_folder(tmp_path_factory.mktemp("mywords"), TONES, speakers=20, burst=True)


def fit_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """The folder recipe on ``root``, one short epoch of a small model, as users run it."""
    return [
        "fit",
        "--config", str(RECIPE_CONF / "folder.yaml"),
        "--data.root", str(root),
        "--run_dir", str(run_dir),
        "--model.architecture.hidden_size", "16",
        "--model.architecture.num_layers", "1",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2",
        *extra,
    ]  # fmt: skip


def run_error(args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    message = str(exit_info.value.code)
    assert "\n" not in message and message.startswith("error: ")
    return message


# -- the survey of a folder ------------------------------------------------------------------


def test_the_default_label_set_matching_no_folder_stops_and_says_what_to_pass(
    my_words: Path,
) -> None:
    survey = FolderSurvey.of(my_words, ["_silence_", "_unknown_", "yes", "no"])
    (problem,) = survey.problems(label_set="v2_12")
    assert "none of the label set v2_12's words (yes, no) is a folder here" in problem
    assert "folders: lights, music, other" in problem
    assert "--data.labels lights,music,_unknown_,_silence_" in problem


def test_a_label_without_clips_is_named_with_the_folder_it_may_mean(my_words: Path) -> None:
    survey = FolderSurvey.of(my_words, ["light", "music", UNKNOWN])
    assert survey.problems() == [
        f"{my_words}: label 'light' has no clips (folders: lights, music, other); "
        "did you mean 'lights'?"
    ]
    assert survey.clips == {"light": 0, "music": 20, UNKNOWN: 40}  # lights fold into unknown


def test_unknown_without_other_words_and_labels_without_a_keyword_stop(my_words: Path) -> None:
    (problem,) = FolderSurvey.of(my_words, [*TONES, UNKNOWN]).problems()
    assert f"label {UNKNOWN} has no clips: no folder of other words" in problem
    (problem,) = FolderSurvey.of(my_words, [SILENCE, UNKNOWN]).problems()
    assert "name no keyword" in problem
    assert FolderSurvey.of(my_words, ["lights", SILENCE]).problems() == []  # silence is cut


def test_unused_folders_and_missing_speaker_ids_are_warned(tmp_path: Path) -> None:
    root = tone_folder(tmp_path / "w", TONES, speakers=4)
    for i, path in enumerate(sorted((root / "music").iterdir())):
        path.rename(path.with_name(f"take{i}.wav"))
    survey = FolderSurvey.of(root, ["lights", "music"])
    unused, unnamed = survey.warnings()
    assert unused == (
        f"{root}: folders not used by the labels: other; add {UNKNOWN} to the labels to "
        "train them as other words"
    )
    assert unnamed.startswith(f"{root}: 4 of 8 clips carry no speaker id (SPEAKER_nohash_N")
    assert "split on its own" in unnamed
    assert FolderSurvey.of(root, ["lights", UNKNOWN]).warnings()[0].startswith(f"{root}: 4 of")


# -- the recipe, as a user runs it -------------------------------------------------------------


def test_labels_separated_by_commas_train_and_counts_are_shown_and_kept(
    my_words: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    main(fit_args(my_words, run_dir, "--data.labels", MY_LABELS))
    err = capfd.readouterr().err
    assert "clips per label and split" in err
    assert "folders not used" not in err  # other words train as _unknown_
    info = json.loads((run_dir / "run_info.json").read_text())
    counts, speakers = info["clips"], info["speakers"]
    assert set(counts) == {"training", "validation", "testing"}
    assert sum(counts[s]["lights"] for s in counts) == 20
    assert sum(counts[s][UNKNOWN] for s in counts) <= 40  # subsampled to unknown_fraction
    assert all(counts[s][SILENCE] > 0 for s in counts)
    assert sum(speakers.values()) == 20  # every speaker in exactly one split
    labels = (run_dir / "labels.txt").read_text().split()
    assert labels == ["lights", "music", UNKNOWN, SILENCE]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), "none of the label set v2_12's words"),
        (("--data.labels", "light,music"), "label 'light' has no clips"),
        (("--data.labels", "lights"), "data.labels: unknown label set 'lights'"),
        (("--data.labels", "lights,lights"), "data.labels: duplicated labels lights"),
    ],
)
def test_labels_a_folder_cannot_train_are_one_line_errors_before_a_run(
    my_words: Path, tmp_path: Path, flags: tuple[str, ...], expected: str
) -> None:
    run_dir = tmp_path / "run"
    assert expected in run_error(fit_args(my_words, run_dir, *flags))
    assert not (run_dir / "checkpoints").exists()


def test_data_root_missing_or_not_set_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    message = run_error(fit_args(missing, tmp_path / "run", "--data.labels", "auto"))
    assert message == f"error: {missing}: dataset folder not found (data.root)"
    args = fit_args(missing, tmp_path / "run")
    del args[3:5]  # no --data.root: folder.yaml leaves it unset
    assert run_error(args).startswith("error: data.root is not set: pass --data.root DIR")


# -- model.init_from ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(my_words: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-word checkpoint of the folder recipe (hidden size 24)."""
    run_dir = tmp_path_factory.mktemp("source")
    main(
        fit_args(
            my_words, run_dir, "--data.labels", "auto", "--model.architecture.hidden_size", "24"
        )
    )
    return run_dir / "checkpoints" / "best.ckpt"


def encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        k.removeprefix("model."): v
        for k, v in state.items()
        if k.startswith("model.") and not k.startswith("model.head.")
    }


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_init_from_takes_the_encoder_and_a_new_head_and_freezing_holds_it(
    my_words: Path, trained: Path, tmp_path: Path
) -> None:
    source = encoder_state(checkpoint_state(trained))
    frozen = tmp_path / "frozen"
    args = ("--data.labels", "lights,_unknown_", "--model.init_from", str(trained))
    # the checkpoint's hidden size (24) wins over the flag, or the encoder would not fit
    main(fit_args(my_words, frozen, *args, "--model.freeze_encoder_epochs", "1"))
    state = checkpoint_state(frozen / "checkpoints" / "last.ckpt")
    assert state["model.head.1.weight"].shape == (2, 48)  # two labels, 2 x 24 features
    assert all(torch.equal(v, source[k]) for k, v in encoder_state(state).items())
    assert not torch.equal(
        state["model.head.1.weight"], checkpoint_state(trained)["model.head.1.weight"][:2]
    )

    thawed = tmp_path / "thawed"
    main(
        fit_args(
            my_words,
            thawed,
            *args,
            "--model.freeze_encoder_epochs",
            "1",
            "--trainer.max_epochs",
            "2",
        )
    )
    state = encoder_state(checkpoint_state(thawed / "checkpoints" / "last.ckpt"))
    assert not torch.equal(state["encoder.weight_ih_l0"], source["encoder.weight_ih_l0"])


@pytest.mark.slow
def test_a_resumed_fit_keeps_its_own_weights_not_the_init_checkpoints(
    my_words: Path, trained: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = ("--data.labels", "lights,_unknown_", "--model.init_from", str(trained))
    main(fit_args(my_words, run_dir, *args))
    last = run_dir / "checkpoints" / "last.ckpt"
    trained_here = encoder_state(checkpoint_state(last))
    main(fit_args(my_words, run_dir, *args, "--ckpt_path", "last", "--test_after_fit", "false"))
    resumed = encoder_state(checkpoint_state(last))  # no step ran: max_epochs already done
    assert all(torch.equal(v, trained_here[k]) for k, v in resumed.items())
    assert not torch.equal(
        trained_here["encoder.weight_ih_l0"],
        encoder_state(checkpoint_state(trained))["encoder.weight_ih_l0"],
    )


def test_init_from_a_missing_or_mismatched_checkpoint_is_one_line(
    my_words: Path, trained: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "none.ckpt"
    message = run_error(fit_args(my_words, tmp_path / "run", "--model.init_from", str(missing)))
    assert message == (
        f"error: {missing}: checkpoint file not found, nor a bundled model (model.init_from)"
    )
    other = KeywordSpotter(
        labels=["lights", UNKNOWN],
        architecture=ArchitectureConfig(hidden_size=8, num_layers=1),
        init_from=str(trained),
    )
    with pytest.raises(CheckpointError, match="its encoder does not fit this model"):
        other.setup("fit")
    with pytest.raises(ValueError, match="freeze_encoder_epochs needs init_from"):
        KeywordSpotter(labels=["lights", UNKNOWN], freeze_encoder_epochs=1)


def test_a_model_trained_from_init_from_loads_without_the_file(
    trained: Path, tmp_path: Path
) -> None:
    """The checkpoint names init_from, but loading it never reads that file again."""
    copy = tmp_path / "src.ckpt"
    shutil.copy(trained, copy)
    model = KeywordSpotter(labels=["lights", UNKNOWN], init_from=str(copy))
    path = tmp_path / "child.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    copy.unlink()
    loaded = KeywordSpotter.load_from_checkpoint(path)
    assert loaded.labels == ["lights", UNKNOWN]


def test_a_datamodule_without_root_or_with_bad_labels_says_so_in_one_line() -> None:
    with pytest.raises(DataError, match="data.root is not set"):
        SpeechCommandsDataModule(root=None, version="folder")
    with pytest.raises(DataError, match="separated by commas"):
        SpeechCommandsDataModule(root="x", version="folder", labels="lights")


def test_a_label_set_partly_present_trains_with_a_warning(tmp_path: Path) -> None:
    root = tone_folder(tmp_path / "w", {"yes": 500.0, "lights": 900.0}, speakers=4)
    survey = FolderSurvey.of(root, ["_silence_", "_unknown_", "yes", "no"])
    assert survey.problems(label_set="v2_12") == []
    (line,) = survey.warnings(label_set="v2_12")
    assert line == (
        f"{root}: labels of the set v2_12 without clips: no; the model keeps them but never "
        "learns them"
    )


@pytest.mark.slow
def test_init_from_the_bundled_model_by_its_name(
    my_words: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog
) -> None:
    """``--model.init_from keywords12``: a new user's words start from the bundled model's
    encoder (its architecture adopted), and the run says what it loaded and froze."""
    from speech_gru.runtime.bundled import bundled_model

    bundled = bundled_model()
    run_dir = tmp_path / "mine"
    args = ("--data.labels", "lights,_unknown_", "--model.init_from", bundled.name)
    with caplog.at_level("INFO"):
        main(fit_args(my_words, run_dir, *args, "--model.freeze_encoder_epochs", "1"))
    said = caplog.text + capsys.readouterr().err
    assert f"features and encoder loaded from {bundled.path}, new head" in said
    assert "encoder frozen for the first 1 epochs" in said
    state = checkpoint_state(run_dir / "checkpoints" / "last.ckpt")
    width = checkpoint_state(bundled.path)["model.head.1.weight"].shape[1]  # the bundled size
    assert state["model.head.1.weight"].shape == (2, width)
    shipped = encoder_state(checkpoint_state(bundled.path))  # float16 matrices as it ships
    assert all(torch.equal(v, shipped[k].to(v.dtype)) for k, v in encoder_state(state).items())
