"""Configuration once: the model's settings are ``ArchitectureConfig`` and ``FeatureConfig``,
nested in configs and checkpoints; the flat form of older configs, flags and checkpoints
is refused in one line everywhere."""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from speech_gru.cli.main import main as cli_main
from speech_gru.core.features import FeatureConfig
from speech_gru.core.model import ARCHITECTURE_KEYS, FEATURE_KEYS, ArchitectureConfig, ModelConfig
from speech_gru.runtime.checkpoint import ModelLoadError, load_checkpoint_model
from speech_gru.runtime.classifier import load_classifier
from speech_gru.train.lit import KeywordSpotter
from speech_gru.train.training import main as train_main
from tests.helpers import LABELS as RECIPE_LABELS
from tests.helpers import RECIPE_CONF, TinyData, print_config
from tests.helpers import TINY_LABELS as LABELS

# Settings that differ from every default, so a setting that is dropped shows.
ARCHITECTURE = ArchitectureConfig(hidden_size=16, num_layers=2, dropout=0.0, attention_dim=8)
FEATURES = FeatureConfig(n_fft=640, hop_length=320, n_mels=30, n_mfcc=20, f_max=7000.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def flat_form(hparams: dict) -> dict:
    """Hyper-parameters as checkpoints stored them before the model's settings were nested
    (without ``sample_rate`` and ``log_floor``, which were not settings then)."""
    flat = dict(hparams)
    architecture, features = flat.pop("architecture"), flat.pop("features")
    features = {k: v for k, v in features.items() if k not in ("sample_rate", "log_floor")}
    return {**architecture, **features, **flat}


def write_flat(checkpoint: Path, path: Path, instantiator: bool = True) -> Path:
    """``checkpoint`` with flat hyper-parameters, and LightningCLI's instantiator entry as
    the recipe's checkpoints have it (or without, as a directly built module's)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hparams = flat_form(state["hyper_parameters"])
    hparams.pop("_instantiator", None)
    if instantiator:
        hparams["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    state["hyper_parameters"] = hparams
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config")


@pytest.fixture(scope="module")
def checkpoint(folder: Path) -> Path:
    """A nested-form checkpoint after one training step, with non-default settings."""
    torch.manual_seed(0)
    module = KeywordSpotter(LABELS, ARCHITECTURE, FEATURES, batch_size=2)
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(module, datamodule=TinyData())
    path = folder / "nested.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module", params=[True, False], ids=["recipe", "direct"])
def flat_checkpoint(request: pytest.FixtureRequest, checkpoint: Path, folder: Path) -> Path:
    """The same checkpoint with old flat hyper-parameters, as the recipe (LightningCLI's
    instantiator recorded) or a direct ``KeywordSpotter(...)`` wrote them."""
    return write_flat(checkpoint, folder / f"flat-{request.param_index}.ckpt", request.param)


# -- defined once -------------------------------------------------------------------------


def test_each_model_setting_is_defined_once() -> None:
    parameters = inspect.signature(KeywordSpotter.__init__).parameters
    assert not set(parameters) & set(ARCHITECTURE_KEYS + FEATURE_KEYS)
    assert parameters["architecture"].default == ArchitectureConfig()
    assert parameters["features"].default == FeatureConfig()
    # ModelConfig inherits the architecture fields, with their defaults, and adds its own.
    assert set(ModelConfig.__annotations__) == {"num_classes", "features", "window_s"}
    assert parameters["window_s"].default == ModelConfig(num_classes=3).window_s == 1.0
    assert ModelConfig(num_classes=3).architecture == ArchitectureConfig()
    spotter = KeywordSpotter()
    assert spotter.model.config == ModelConfig(num_classes=12)
    assert spotter.hparams["architecture"] == asdict(ArchitectureConfig())
    assert spotter.hparams["features"] == asdict(FeatureConfig())
    assert spotter.hparams["window_s"] == 1.0
    for name in ARCHITECTURE_KEYS + FEATURE_KEYS:  # documented once, in its dataclass
        assert f"{name}:" not in (KeywordSpotter.__doc__ or "")


def test_the_recipe_defaults_are_the_dataclasses(capsys: pytest.CaptureFixture) -> None:
    printed = print_config(capsys, "--data.root", "x")
    assert printed["model"]["architecture"] == asdict(ArchitectureConfig())
    assert printed["model"]["features"] == asdict(FeatureConfig())


# -- the recipe's YAML --------------------------------------------------------------------


CONFIGS = {
    "folder.yaml": ["folder.yaml"],
    "demo.yaml": ["demo.yaml"],
    "stream_gru.yaml": ["stream_gru.yaml"],
    "v2_12.yaml": ["v2_12.yaml"],
    "v2_35.yaml": ["v2_35.yaml"],
    "small.yaml": ["folder.yaml", "small.yaml"],  # overlays: after a recipe config
    "bundled.yaml": ["folder.yaml", "bundled.yaml"],
    "ddp_gpus.yaml": ["v2_12.yaml", "ddp_gpus.yaml"],
}


def test_every_config_is_listed() -> None:
    assert {p.name for p in RECIPE_CONF.glob("*.yaml")} == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_configs_parse_in_the_nested_form(name: str, capsys: pytest.CaptureFixture) -> None:
    model = yaml.safe_load((RECIPE_CONF / name).read_text()).get("model") or {}
    ModelConfig.check_nested(model)
    args = [a for conf in CONFIGS[name] for a in ("--config", str(RECIPE_CONF / conf))]
    printed = print_config(capsys, *args, "--data.root", "x")["model"]
    ArchitectureConfig(**printed["architecture"])
    FeatureConfig(**printed["features"])
    if name == "small.yaml":  # the deployment size
        assert printed["architecture"]["hidden_size"] == 128 and printed["features"]["n_fft"] == 480
        assert printed["features"]["hop_length"] == 320  # from folder.yaml
    if name == "bundled.yaml":  # makes the model that ships: the same architecture
        from speech_gru.runtime.bundled import bundled_model
        from speech_gru.runtime.checkpoint import read_checkpoint, stored_hyper_parameters

        path = bundled_model().path
        shipped = stored_hyper_parameters(path, read_checkpoint(path))
        # as configs: a checkpoint from before a setting existed has its default
        architecture = ArchitectureConfig(**shipped["architecture"])
        assert ArchitectureConfig(**printed["architecture"]) == architecture
        assert printed["features"] == shipped["features"]


def refusal(capsys: pytest.CaptureFixture, *args: str) -> str:
    """The last line the recipe prints when it refuses ``fit`` with these arguments."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", *args, "--print_config"])
    assert exit_info.value.code not in (0, None)
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_flat_configs_and_flags_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A config of the flat form (as the recipe's were before the nesting) or a flat flag
    ends in one error line naming the setting."""
    nested = RECIPE_CONF / "folder.yaml"
    config = yaml.safe_load(nested.read_text())
    config["model"] = {**config["model"].pop("architecture"), **config["model"].pop("features"),
                       **config["model"]}  # fmt: skip
    flat = tmp_path / "flat_folder.yaml"
    flat.write_text(yaml.safe_dump(config))
    line = refusal(capsys, "--config", str(flat), "--data.root", "x")
    assert line == "error: Group 'model' does not accept option 'cell'", line

    line = refusal(capsys, "--config", str(nested), "--data.root", "x", "--model.hidden_size", "96")
    assert line == "error: unrecognized arguments: --model.hidden_size 96", line


# -- old checkpoints ----------------------------------------------------------------------


def flat_message(path: Path) -> str:
    return f"{path}: model settings of the old flat form (cell, hidden_size, num_layers, "


def test_a_flat_checkpoint_is_refused_in_one_line(
    flat_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    stored = torch.load(flat_checkpoint, weights_only=True)["hyper_parameters"]
    assert "architecture" not in stored and stored["n_fft"] == 640  # really the old form
    for load in (load_checkpoint_model, load_classifier):
        with pytest.raises(ModelLoadError) as caught:
            load(flat_checkpoint)
        message = str(caught.value)
        assert message.startswith(flat_message(flat_checkpoint)) and "\n" not in message
        assert "model.architecture.cell" in message, message
    with pytest.raises(ValueError, match="old flat form"):
        ModelConfig.from_hparams(stored, len(LABELS))

    capsys.readouterr()
    assert cli_main(["info", "--checkpoint", str(flat_checkpoint)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {flat_message(flat_checkpoint)}") and "\n" not in err, err


def fit_args(commands_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config", str(RECIPE_CONF / "demo.yaml"),
        "--data.root", str(commands_dir),
        "--data.labels", json.dumps(RECIPE_LABELS),
        "--data.num_workers", "0",
        "--data.unknown_fraction", "null",
        "--data.testing_percent", "20",
        "--run_dir", str(run_dir),
        "--trainer.accelerator", "cpu",
        "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--test_after_fit", "false",
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("flag", ["--ckpt_path", "--model.init_from"])
def test_training_from_a_flat_checkpoint_is_refused(
    commands_dir: Path, tmp_path: Path, flat_checkpoint: Path, flag: str
) -> None:
    """Resuming from a checkpoint of the flat form, or starting from its encoder, ends in
    one line before anything is trained."""
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train_main(fit_args(commands_dir, run_dir, flag, str(flat_checkpoint)))
    message = str(exit_info.value.code)
    assert message.startswith(f"error: {flat_message(flat_checkpoint)}"), message
    assert "\n" not in message
    assert not (run_dir / "checkpoints").exists()


def test_resume_takes_the_checkpoints_model_settings(commands_dir: Path, tmp_path: Path) -> None:
    """A checkpoint given by its path sets the model's settings (LightningCLI reads its
    hyper-parameters), over the config's."""
    run_dir = tmp_path / "run"
    small = ["--model.architecture.hidden_size", "16", "--model.architecture.num_layers", "1",
             "--model.features.n_fft", "640", "--model.features.hop_length", "320"]  # fmt: skip
    first = train_main(fit_args(commands_dir, run_dir, *small, "--trainer.max_epochs", "1"))
    assert first.trainer.global_step == 2
    assert first.model.model.config.hidden_size == 16
    last = run_dir / "checkpoints" / "last.ckpt"
    # The demo.yaml of fit_args says 128 units: the checkpoint's 16 win.
    resumed = train_main(
        fit_args(commands_dir, run_dir, "--ckpt_path", str(last), "--trainer.max_epochs", "2")
    )
    assert resumed.trainer.global_step == 4 and resumed.trainer.current_epoch == 2
    config = resumed.model.model.config
    assert (config.hidden_size, config.num_layers, config.features.n_fft) == (16, 1, 640)
    saved = torch.load(last, weights_only=True)["hyper_parameters"]
    assert saved["architecture"]["hidden_size"] == 16 and "hidden_size" not in saved
