"""A model's window follows its ``window_s`` (0.5 to 3 s): the clips it trains on, the
windows the detector scores, its exports and the analyses, from one setting stored in
the checkpoint; a model without it (the bundled one) reads as 1 s."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from speech_gru.analysis.evaluate import evaluate_folder
from speech_gru.analysis.explain import explain_file
from speech_gru.analysis.noise_robustness import noise_robustness
from speech_gru.cli.main import main as cli_main
from speech_gru.core.audio import SAMPLE_RATE, write_wav
from speech_gru.core.features import FeatureConfig
from speech_gru.core.labels import SILENCE, UNKNOWN
from speech_gru.core.model import ArchitectureConfig, KeywordModel, ModelConfig
from speech_gru.runtime.bundled import bundled_model
from speech_gru.runtime.checkpoint import ModelLoadError, read_checkpoint
from speech_gru.runtime.classifier import Classifier, ModelStepper, load_classifier
from speech_gru.runtime.export import StreamingStep, export
from speech_gru.runtime.factory import Runtime, SettingError, detector_config, load_model
from speech_gru.train.data import DataError, SpeechCommandsDataModule
from speech_gru.train.lit import KeywordSpotter
from speech_gru.train.pack import open_pack, pack_name
from speech_gru.train.training import main
from tests.helpers import RECIPE_CONF, STREAM_FEATURES, TINY_LABELS

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOW_S = 1.5
WINDOW = 24000  # samples of 1.5 s at 16 kHz
TONES = {"lights": 500.0, "music": 900.0, "other": 1400.0}
LABELS = f"lights,music,{UNKNOWN},{SILENCE}"


def phrase(hz: float, seconds: float = WINDOW_S, seed: int = 0) -> np.ndarray:
    """A two-part "phrase" of ``seconds``: tone bursts at 0.2-0.6 s and 0.9-1.3 s (the
    second one past the first second) over quiet noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    on = ((t > 0.2) & (t < 0.6)) | ((t > 0.9) & (t < 1.3))
    return (0.3 * on * np.sin(2 * np.pi * hz * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def phrases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset-layout folder of 1.5 s tone phrases, 12 speakers per word, with noise."""
    root = tmp_path_factory.mktemp("phrases")
    for word, hz in TONES.items():
        (root / word).mkdir()
        for s in range(12):
            write_wav(root / word / f"{s:08x}_nohash_0.wav", phrase(hz * (1 + 0.02 * s), seed=s))
    (root / "_background_noise_").mkdir()
    noise = 0.05 * np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE)
    write_wav(root / "_background_noise_" / "white.wav", noise)
    return root


class LongClips(L.LightningDataModule):
    """Four random 1.5 s clips, for one training step."""

    def train_dataloader(self) -> DataLoader:
        waves = 0.1 * torch.randn(4, WINDOW, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(waves, torch.tensor([0, 1, 2, 3])), batch_size=2)


def long_checkpoint(path: Path, forward: bool = False) -> Path:
    """A 1.5 s model (labels TINY_LABELS) after one step on 1.5 s clips, saved as the
    recipe saves one; ``forward``: a streaming model framed as conf/stream_gru.yaml."""
    torch.manual_seed(0)
    kind = {"direction": "forward", "feature_norm": "global"} if forward else {}
    module = KeywordSpotter(
        labels=TINY_LABELS,
        architecture=ArchitectureConfig(hidden_size=16, num_layers=1, attention_dim=8, **kind),
        features=STREAM_FEATURES if forward else FeatureConfig(),
        window_s=WINDOW_S,
        batch_size=2,
    )
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(module, datamodule=LongClips())
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return long_checkpoint(tmp_path_factory.mktemp("long") / "long.ckpt")


@pytest.fixture(scope="module")
def forward_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return long_checkpoint(tmp_path_factory.mktemp("long") / "forward.ckpt", forward=True)


def fit_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """The folder recipe on ``root``: two batches of one epoch of a small model."""
    return [
        "fit",
        "--config", str(RECIPE_CONF / "folder.yaml"),
        "--data.root", str(root),
        "--data.labels", LABELS,
        "--data.num_workers", "0",
        "--data.batch_size", "8",
        "--data.pack_dir", str(run_dir / "packs"),
        "--run_dir", str(run_dir),
        "--model.architecture.hidden_size", "16",
        "--model.architecture.num_layers", "1",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


# -- the setting -------------------------------------------------------------------------------


def test_the_window_is_part_of_the_model_config_and_refused_outside_half_to_three_s() -> None:
    config = ModelConfig(num_classes=4)
    assert (config.window_s, config.window_samples) == (1.0, 16000)
    assert ModelConfig.build(4, ArchitectureConfig(), FeatureConfig(), 3).window_samples == 48000
    assert ModelConfig.from_hparams({}, 4).window_s == 1.0  # written before it was stored
    assert ModelConfig.from_hparams({"window_s": WINDOW_S}, 4).window_samples == WINDOW
    for bad in (0.4, 3.5, float("nan"), True, "1.5"):
        with pytest.raises(
            ValueError, match=r"^window_s must be a number of seconds from 0.5 to 3 "
        ) as err:
            ModelConfig(num_classes=4, window_s=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="^data.window_s must be a number of seconds"):
        SpeechCommandsDataModule(root="unused", window_s=0.2)


def test_a_checkpoint_stores_its_window_and_loads_with_it(checkpoint: Path) -> None:
    assert read_checkpoint(checkpoint)["hyper_parameters"]["window_s"] == WINDOW_S
    classifier = load_model(checkpoint)
    assert (classifier.window_s, classifier.window) == (WINDOW_S, WINDOW)


def test_a_checkpoint_from_before_window_lengths_reads_as_one_second(tmp_path: Path) -> None:
    """Checkpoints written before ``model.window_s`` existed have no such setting: one
    second, as they were trained. The bundled model records its second."""
    bundled = bundled_model("keywords12").path
    checkpoint = read_checkpoint(bundled)
    assert checkpoint["hyper_parameters"]["window_s"] == 1.0
    del checkpoint["hyper_parameters"]["window_s"]
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    for path in (bundled, older):
        classifier = load_model(path)
        assert (classifier.window_s, classifier.window) == (1.0, 16000)
        assert detector_config(classifier).window == 16000


# -- the detector --------------------------------------------------------------------------


def test_the_detector_scores_windows_of_the_models_length(checkpoint: Path) -> None:
    runtime = Runtime.load(checkpoint)
    assert runtime.config.window_s == WINDOW_S
    shapes: list[tuple[int, ...]] = []
    scorer = runtime.classifier.scorer(runtime.config)

    def recording(windows: np.ndarray) -> np.ndarray:
        shapes.append(windows.shape)
        return scorer(windows)

    detector = runtime.detector(recording, keep_trace=True)
    detector.push(phrase(500.0, seconds=3.0))
    detector.flush()
    assert {shape[1] for shape in shapes} == {WINDOW}
    assert detector.trace_times[0] == pytest.approx(WINDOW_S)  # the first window ends at 1.5 s
    assert len(detector.trace_times) == 1 + (48000 - WINDOW) // 1600  # every 0.1 s hop
    # a window given for a bidirectional model is taken as it is (an experiment)
    assert detector_config(runtime.classifier, {"window_s": 1.0}).window == 16000


def test_a_forward_model_steps_over_its_own_window_and_refuses_another(
    forward_checkpoint: Path,
) -> None:
    classifier = load_model(forward_checkpoint)
    assert classifier.window_s == WINDOW_S
    frames = STREAM_FEATURES.num_frames(WINDOW)
    assert classifier.stepper.window_frames == frames
    config = detector_config(classifier)
    assert config.window == WINDOW
    detector = Runtime(classifier, config).detector(keep_trace=True)
    detector.push(phrase(900.0, seconds=2.5))
    detector.flush()
    assert detector.trace_times[0] == pytest.approx(WINDOW_S)
    with pytest.raises(SettingError, match="scores its own 1.5 s window, not 1 s") as err:
        detector_config(classifier, {"window_s": 1.0})
    assert err.value.name == "window_s"
    model = KeywordModel(ModelConfig.build(4, classifier_architecture(), STREAM_FEATURES, 2.0))
    assert ModelStepper(model.eval()).window_frames == STREAM_FEATURES.num_frames(32000)


def classifier_architecture() -> ArchitectureConfig:
    return ArchitectureConfig(hidden_size=8, num_layers=1, direction="forward", feature_norm="none")


@pytest.mark.parametrize("kind", ["bidirectional", "forward"])
def test_serve_turns_score_the_models_window_as_the_detector_does(
    kind: str, checkpoint: Path, forward_checkpoint: Path
) -> None:
    from speech_gru.cli.serve_turns import Hub, Stream

    classifier = load_model(forward_checkpoint if kind == "forward" else checkpoint)
    config = detector_config(classifier, batch_windows=1)
    audio = phrase(700.0, seconds=3.0)
    alone = Runtime(classifier, config).detector(keep_trace=True)
    alone.push(audio)
    hub, stream = Hub(classifier), Stream(classifier, config)
    for chunk in np.array_split(audio, 7):
        hub.turn([(stream, chunk)])
    hub.executor.shutdown()
    assert stream.window == WINDOW
    assert stream.detector.trace_times == alone.trace_times
    assert stream.detector.trace_times[0] == pytest.approx(WINDOW_S)
    np.testing.assert_allclose(stream.detector.trace, alone.trace, atol=1e-5)


# -- exports -------------------------------------------------------------------------------------


def test_the_onnx_export_records_the_window_and_matches_the_checkpoint(
    checkpoint: Path, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime as ort

    path = export(checkpoint, tmp_path / "long.onnx", "onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["window_s"] == "1.5" and "1.5 s windows (24000 samples)" in meta["input"]
    assert json.loads(meta["hyper_parameters"])["window_s"] == WINDOW_S
    (waveform,) = ort.InferenceSession(str(path)).get_inputs()
    assert waveform.name == "waveform" and waveform.shape == ["batch", "samples"]
    exported, original = load_model(path), load_model(checkpoint)
    assert (exported.window_s, exported.window) == (WINDOW_S, WINDOW)
    waves = np.stack([phrase(hz, seed=i) for i, hz in enumerate((300.0, 700.0, 1200.0))])
    assert waves.shape == (3, WINDOW)
    torch.testing.assert_close(exported.predict(waves), original.predict(waves), atol=1e-4, rtol=0)
    assert Runtime.load(path).config.window == WINDOW


def test_torchscript_and_streaming_exports_give_the_window_back(
    checkpoint: Path, forward_checkpoint: Path, tmp_path: Path
) -> None:
    script = export(checkpoint, tmp_path / "long.pt", "torchscript")
    assert load_classifier(script, trust_torchscript=True).window_s == WINDOW_S
    stream = export(forward_checkpoint, tmp_path / "step.onnx", "onnx", streaming=True)
    classifier = load_classifier(stream)
    assert classifier.window_s == WINDOW_S
    frames = STREAM_FEATURES.num_frames(WINDOW)
    assert classifier.stepper.past_shape == (frames - 1, len(TINY_LABELS))
    model = read_model(forward_checkpoint)
    assert StreamingStep(model).spec["window_frames"] == frames


def read_model(path: Path) -> KeywordModel:
    from speech_gru.runtime.checkpoint import load_checkpoint_model

    return load_checkpoint_model(path)[0]


def test_an_export_without_a_window_reads_as_one_second_and_a_bad_one_is_refused(
    checkpoint: Path, tmp_path: Path
) -> None:
    import onnx

    path = export(checkpoint, tmp_path / "long.onnx", "onnx")
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != "window_s"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "old.onnx"))
    assert load_classifier(tmp_path / "old.onnx").window_s == 1.0
    model.metadata_props.add(key="window_s", value="9")
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(ModelLoadError) as err:
        load_classifier(tmp_path / "bad.onnx")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'bad.onnx'}: window_s metadata is malformed")
    assert "\n" not in message


# -- analysis ------------------------------------------------------------------------------------


def test_explain_takes_the_loudest_window_of_the_models_length(
    checkpoint: Path, tmp_path: Path
) -> None:
    wav = tmp_path / "long.wav"
    write_wav(wav, np.concatenate([np.zeros(SAMPLE_RATE, np.float32), phrase(500.0)]))
    explanation = explain_file(checkpoint, wav)
    assert explanation.wave.size == WINDOW and explanation.window_s == WINDOW_S
    assert explanation.window_note().startswith("2.50 s clip: explained its loudest 1.5 s")
    assert explanation.to_dict()["window"]["model_s"] == WINDOW_S
    short = tmp_path / "short.wav"
    write_wav(short, phrase(500.0, seconds=1.0))
    assert explain_file(checkpoint, short).window_note() == "1.00 s clip: zero-padded to 1.5 s"


def test_evaluate_and_noise_robustness_score_clips_of_the_models_window(phrases: Path) -> None:
    lengths: list[int] = []

    def backend(batch: np.ndarray, lengths_: np.ndarray | None) -> np.ndarray:
        lengths.extend([batch.shape[1]] * len(batch))
        return np.full((len(batch), 3), 1 / 3, np.float32)

    labels = ["lights", "music", UNKNOWN]
    classifier = Classifier(backend, labels, Path("stand-in"), "checkpoint", window_s=WINDOW_S)
    report = evaluate_folder(classifier, phrases, progress=False)
    assert report.total == 36 and set(lengths) == {WINDOW}
    lengths.clear()
    noise_robustness(classifier, phrases, split="training", snrs=(10.0,))
    assert lengths and set(lengths) == {WINDOW}


def test_info_prints_the_window(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["info", "--checkpoint", str(checkpoint)]) == 0
    assert "window:" in (out := capsys.readouterr().out)
    assert "1.5 s (24000 samples)" in out
    assert cli_main(["info", "--checkpoint", str(checkpoint), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["window_s"] == WINDOW_S


# -- training ------------------------------------------------------------------------------------


def test_the_recipe_cuts_every_clip_to_the_models_window(phrases: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cli = main(fit_args(phrases, run_dir, "--model.window_s", "1.5"))
    data = cli.datamodule
    assert data.hparams.window_s == WINDOW_S and data.clip_samples == WINDOW
    silence = data.labels.index(SILENCE)
    for split, dataset in data.datasets.items():
        assert any(c.label == silence for c in dataset.clips), split  # generated silence
        assert {dataset[i][0].shape[0] for i in range(len(dataset))} == {WINDOW}, split
    assert data._bank is not None and data._bank.sample(2).shape == (2, WINDOW)
    best = read_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    assert best["hyper_parameters"]["window_s"] == WINDOW_S
    assert best["datamodule_hyper_parameters"]["window_s"] == WINDOW_S
    assert load_model(run_dir / "checkpoints" / "best.ckpt").window == WINDOW


def test_packs_of_different_windows_never_mix(phrases: Path, tmp_path: Path) -> None:
    pack_dir = tmp_path / "packs"
    one = SpeechCommandsDataModule(root=str(phrases), version="folder", labels=LABELS,
                                   pack_dir=str(pack_dir))  # fmt: skip
    long = SpeechCommandsDataModule(root=str(phrases), version="folder", labels=LABELS,
                                    pack_dir=str(pack_dir), window_s=WINDOW_S)  # fmt: skip
    long.pack(progress=False)
    files = [c.path for c in long.build_splits()["training"] if c.path is not None]
    assert (pack_dir / f"{pack_name('training', WINDOW)}.npy").is_file()
    assert open_pack(pack_dir, "training", files) is None  # no 1 s pack yet
    assert np.load(pack_dir / "training.24000.npy").shape == (len(files), WINDOW)
    assert one.pack(progress=False)["training"] == len(files)  # its own, not the 1.5 s one
    assert np.load(pack_dir / "training.npy").shape == (len(files), 16000)
    packed = open_pack(pack_dir, "training", files, WINDOW)
    assert packed is not None and packed.samples == WINDOW
    assert packed.get(files[0]).shape == (WINDOW,)  # the phrase whole, past its first second
    long.setup("fit")
    assert long.datasets["training"].packed.samples == WINDOW


def test_a_one_second_model_starts_a_longer_one(phrases: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cli = main(fit_args(phrases, run_dir, "--model.init_from", "keywords12",
                        "--model.window_s", "1.6"))  # fmt: skip
    source = read_checkpoint(bundled_model("keywords12").path)["hyper_parameters"]
    config = cli.model.model.config
    assert config.window_s == 1.6 and cli.datamodule.clip_samples == 25600
    assert config.hidden_size == source["architecture"]["hidden_size"]  # its encoder
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["hyper_parameters"][
        "window_s"
    ] == pytest.approx(1.6)


def test_a_window_out_of_range_is_refused_in_one_line(phrases: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(phrases, tmp_path / "run", "--model.window_s", "5"))
    message = str(exit_info.value.code)
    assert message.startswith("error: model.window_s must be a number of seconds from 0.5 to 3")
    assert "\n" not in message
    assert not (tmp_path / "run" / "checkpoints").exists()
