"""Configuration once: the model's settings are ``ArchitectureConfig`` and ``FeatureConfig``,
nested in configs and checkpoints; the flat form of older configs, flags and checkpoints
still loads everywhere."""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from speech_gru.cli.main import main as cli_main
from speech_gru.core.features import FeatureConfig
from speech_gru.core.model import (
    ARCHITECTURE_KEYS,
    FEATURE_KEYS,
    ArchitectureConfig,
    ModelConfig,
    flat_keys,
    nest_config,
)
from speech_gru.runtime.classifier import load_checkpoint_model, load_classifier
from speech_gru.train.lit import KeywordSpotter
from speech_gru.train.training import main as train_main
from tests.helpers import LABELS as RECIPE_LABELS
from tests.helpers import RECIPE_CONF, TinyData
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


def waves() -> torch.Tensor:
    return 0.1 * torch.randn(3, 16000, generator=torch.Generator().manual_seed(1))


# -- defined once -------------------------------------------------------------------------


def test_each_model_setting_is_defined_once() -> None:
    parameters = inspect.signature(KeywordSpotter.__init__).parameters
    assert not set(parameters) & set(ARCHITECTURE_KEYS + FEATURE_KEYS)
    assert parameters["architecture"].default == ArchitectureConfig()
    assert parameters["features"].default == FeatureConfig()
    # ModelConfig inherits the architecture fields, with their defaults, and adds its own.
    assert set(ModelConfig.__annotations__) == {"num_classes", "features"}
    assert ModelConfig(num_classes=3).architecture == ArchitectureConfig()
    spotter = KeywordSpotter()
    assert spotter.model.config == ModelConfig(num_classes=12)
    assert spotter.hparams["architecture"] == asdict(ArchitectureConfig())
    assert spotter.hparams["features"] == asdict(FeatureConfig())
    for name in ARCHITECTURE_KEYS + FEATURE_KEYS:  # documented once, in its dataclass
        assert f"{name}:" not in (KeywordSpotter.__doc__ or "")


def test_the_recipe_defaults_are_the_dataclasses(capsys: pytest.CaptureFixture) -> None:
    printed = print_config(capsys, "--data.root", "x")
    assert printed["model"]["architecture"] == asdict(ArchitectureConfig())
    assert printed["model"]["features"] == asdict(FeatureConfig())


def test_nest_config() -> None:
    flat = {"hidden_size": 64, "n_fft": 640, "lr": 0.1, "labels": ["a"]}
    nested = nest_config(flat)
    assert nested == {
        "lr": 0.1, "labels": ["a"], "architecture": {"hidden_size": 64},
        "features": {"n_fft": 640},
    }  # fmt: skip
    assert flat_keys(flat) == ["hidden_size", "n_fft"] and flat_keys(nested) == []
    assert nest_config(nested) == nested
    both = {"architecture": {"hidden_size": 8, "cell": "lstm"}, "hidden_size": 64}
    assert nest_config(both) == {"architecture": {"hidden_size": 64, "cell": "lstm"}}
    assert nest_config({"lr": 1.0}) == {"lr": 1.0}


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The recipe's own warnings (Lightning logs its own too)."""
    return [r for r in caplog.records if r.name == "speech_gru.train.training"]


# -- the recipe's YAML --------------------------------------------------------------------


def print_config(capsys: pytest.CaptureFixture, *args: str) -> dict:
    """The config the recipe's ``fit`` would run with (``--print_config``)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


CONFIGS = {
    "folder.yaml": ["folder.yaml"],
    "demo.yaml": ["demo.yaml"],
    "stream_gru.yaml": ["stream_gru.yaml"],
    "v2_12.yaml": ["v2_12.yaml"],
    "v2_35.yaml": ["v2_35.yaml"],
    "small.yaml": ["folder.yaml", "small.yaml"],  # overlays: after a recipe config
    "ddp_gpus.yaml": ["v2_12.yaml", "ddp_gpus.yaml"],
}


def test_every_config_is_listed() -> None:
    assert {p.name for p in RECIPE_CONF.glob("*.yaml")} == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_configs_parse_in_the_nested_form(name: str, capsys: pytest.CaptureFixture) -> None:
    model = yaml.safe_load((RECIPE_CONF / name).read_text()).get("model") or {}
    assert flat_keys(model) == []
    args = [a for conf in CONFIGS[name] for a in ("--config", str(RECIPE_CONF / conf))]
    printed = print_config(capsys, *args, "--data.root", "x")["model"]
    ArchitectureConfig(**printed["architecture"])
    FeatureConfig(**printed["features"])
    if name == "small.yaml":
        assert printed["architecture"]["hidden_size"] == 128 and printed["features"]["n_fft"] == 480
        assert printed["features"]["hop_length"] == 320  # from folder.yaml


def test_flat_configs_and_flags_still_parse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    """A config of the flat form (as the recipe's were) reads as its nested twin, with a
    one-line deprecation warning; so do flat flags."""
    nested = RECIPE_CONF / "folder.yaml"
    config = yaml.safe_load(nested.read_text())
    config["model"] = {**config["model"].pop("architecture"), **config["model"].pop("features"),
                       **config["model"]}  # fmt: skip
    flat = tmp_path / "flat_folder.yaml"
    flat.write_text(yaml.safe_dump(config))
    expected = print_config(capsys, "--config", str(nested), "--data.root", "x")
    with caplog.at_level(logging.WARNING, logger="speech_gru.train.training"):
        assert print_config(capsys, "--config", str(flat), "--data.root", "x") == expected
    [record] = warnings(caplog)
    message = record.getMessage()
    assert flat.name in message and "model.hidden_size" in message and "deprecated" in message
    assert "\n" not in message
    caplog.clear()

    with caplog.at_level(logging.WARNING, logger="speech_gru.train.training"):
        printed = print_config(
            capsys, "--config", str(nested), "--data.root", "x",
            "--model.hidden_size", "96", "--model.f_max=4000", "--model.lr", "0.01",
        )  # fmt: skip
    [record] = warnings(caplog)
    assert "--model.hidden_size, --model.f_max: flat model flags are deprecated" in (
        record.getMessage()
    )
    model = printed["model"]
    assert model["architecture"]["hidden_size"] == 96 and model["features"]["f_max"] == 4000
    assert model["lr"] == 0.01 and model["features"]["n_fft"] == 640


# -- old checkpoints ----------------------------------------------------------------------


def test_a_flat_checkpoint_loads_and_predicts_as_before(
    checkpoint: Path, flat_checkpoint: Path
) -> None:
    stored = torch.load(flat_checkpoint, weights_only=True)["hyper_parameters"]
    assert "architecture" not in stored and stored["n_fft"] == 640  # really the old form
    before = KeywordSpotter.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    after = KeywordSpotter.load_from_checkpoint(flat_checkpoint, map_location="cpu").eval()
    assert after.model.config == before.model.config
    assert after.model.config.architecture == ARCHITECTURE
    assert after.model.config.features == FEATURES
    assert after.labels == LABELS
    assert dict(after.hparams) == {k: v for k, v in before.hparams.items()}
    with torch.no_grad():
        torch.testing.assert_close(after(waves()), before(waves()))

    model, labels, _ = load_checkpoint_model(flat_checkpoint)
    assert labels == LABELS and model.config == before.model.config
    with torch.no_grad():
        torch.testing.assert_close(model(waves()).softmax(-1), before(waves()))
    probabilities = load_classifier(flat_checkpoint).predict(waves())
    torch.testing.assert_close(probabilities, load_classifier(checkpoint).predict(waves()))


def test_cli_commands_take_a_flat_checkpoint(
    checkpoint: Path, flat_checkpoint: Path, folder: Path, capsys: pytest.CaptureFixture
) -> None:
    def info(path: Path) -> dict:
        assert cli_main(["info", "--checkpoint", str(path), "--json"]) == 0
        card = json.loads(capsys.readouterr().out)
        del card["file"]
        return card

    assert info(flat_checkpoint) == info(checkpoint)

    export = folder / f"{flat_checkpoint.stem}.pt"
    assert cli_main(["export", "--checkpoint", str(flat_checkpoint), "--format", "torchscript",
                     "--out", str(export)]) == 0  # fmt: skip
    capsys.readouterr()
    exported = info(export)  # its metadata holds the flat hyper-parameters
    assert exported["parameters"] == info(checkpoint)["parameters"]
    assert exported["features"]["n_fft"] == 640
    torch.testing.assert_close(
        load_classifier(export).predict(waves()), load_classifier(checkpoint).predict(waves()),
        atol=1e-5, rtol=1e-4,
    )  # fmt: skip

    from speech_gru.core.audio import write_wav

    clip = folder / "clip.wav"
    write_wav(clip, waves()[0].numpy())
    records = []
    for path in (checkpoint, flat_checkpoint):
        out = folder / f"explain-{path.stem}.json"
        args = ["explain", "--checkpoint", str(path), str(clip), "--out", str(out) + ".png"]
        assert cli_main([*args, "--json", str(out)]) == 0
        records.append(json.loads(out.read_text()))
    assert records[0] == {**records[1], "file": records[0]["file"]}
    assert len(records[0]["times"]) == 1 + (16000 - 640) // 320
    np.testing.assert_allclose(sum(records[1]["attention"]), 1.0, atol=1e-4)


# -- resume -------------------------------------------------------------------------------


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


def test_resume_from_a_flat_checkpoint_with_a_flat_config(
    commands_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run made before the nesting (flat config, flat flags, flat checkpoints) resumes."""
    model = yaml.safe_load((RECIPE_CONF / "demo.yaml").read_text())["model"]
    flat = tmp_path / "flat_model.yaml"  # demo.yaml's model section, flat
    flat.write_text(yaml.safe_dump({"model": {**model.pop("architecture"), **model}}))
    run_dir = tmp_path / "run"
    small = ["--model.hidden_size", "16", "--model.num_layers", "1", "--model.n_fft", "640",
             "--model.hop_length", "320"]  # fmt: skip
    first = train_main(
        fit_args(commands_dir, run_dir, "--config", str(flat), *small, "--trainer.max_epochs", "1")
    )
    assert first.trainer.global_step == 2
    assert first.model.model.config.hidden_size == 16
    last = run_dir / "checkpoints" / "last.ckpt"
    write_flat(last, last)
    assert "architecture" not in torch.load(last, weights_only=True)["hyper_parameters"]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="speech_gru.train.training"):
        # The nested demo.yaml says 128 units: a checkpoint given by its path sets the
        # model's settings (LightningCLI reads its hyper-parameters), flat ones too.
        resumed = train_main(
            fit_args(commands_dir, run_dir, "--ckpt_path", str(last), "--trainer.max_epochs", "2")
        )
    assert not warnings(caplog)  # nothing flat was given this time
    assert resumed.trainer.global_step == 4 and resumed.trainer.current_epoch == 2
    config = resumed.model.model.config
    assert (config.hidden_size, config.num_layers, config.features.n_fft) == (16, 1, 640)
    saved = torch.load(last, weights_only=True)["hyper_parameters"]
    assert saved["architecture"]["hidden_size"] == 16 and "hidden_size" not in saved
