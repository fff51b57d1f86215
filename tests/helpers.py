"""Builders and constants shared by the tests: generated audio, tiny checkpoints and data
folders, the recipe's arguments, and stand-ins for hardware.

Tests import from here, never from one another (tests/test_layout.py checks), and
tests/conftest.py holds fixtures only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import types
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, TensorDataset

from speech_gru.core.audio import SAMPLE_RATE, AudioError, write_wav
from speech_gru.core.features import FeatureConfig
from speech_gru.core.model import ArchitectureConfig, KeywordModel, ModelConfig
from speech_gru.train.augment import NoiseBank
from speech_gru.train.data import SpeechCommandsDataModule
from speech_gru.train.lit import KeywordSpotter

# -- the recipe on the synthetic commands folder (tests/conftest.py's session fixtures) ------

RECIPE_CONF = Path(__file__).resolve().parents[1] / "recipes" / "speech_commands" / "conf"
WORDS = ("yes", "no", "up", "down")
UNKNOWN_WORDS = ("cat", "dog", "tree")
LABELS = ["_silence_", "_unknown_", *WORDS]
# The label set of the tiny checkpoints below (and of stand-in classifiers).
TINY_LABELS = ["_silence_", "_unknown_", "yes", "no"]


def require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install sets it up)")


def synthesize(factory: pytest.TempPathFactory, name: str, speakers: int, seed: int) -> Path:
    """A Speech-Commands-layout folder of WORDS and UNKNOWN_WORDS spoken by espeak-ng."""
    require_espeak()
    from speech_gru.train.synth_espeak import make_dataset

    root = factory.mktemp(name)
    make_dataset(root, words=WORDS, unknown_words=UNKNOWN_WORDS, speakers=speakers, seed=seed)
    return root


def train_args(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Recipe arguments for a small, quick model on the synthetic folder."""
    return [
        "fit",
        "--config", str(RECIPE_CONF / "demo.yaml"),
        "--data.root", str(data_root),
        "--data.labels", json.dumps(LABELS),  # quoted: YAML reads a bare yes/no as a bool
        "--data.num_workers", "0",
        "--data.unknown_fraction", "null",
        "--run_dir", str(run_dir),
        "--data.testing_percent", "20",
        "--model.architecture.hidden_size", "64",
        "--model.architecture.num_layers", "1",
        "--model.lr", "0.005",
        "--model.lr_scaling", "none",  # 0.005 at this batch of 32, as tuned
        "--model.features.n_fft", "640",  # 20 ms frames, as folder.yaml: half the GRU steps
        "--model.features.hop_length", "320",
        "--trainer.max_epochs", "25",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def fast_dev_run_args(config: str, data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """``fit`` of a recipe config for one batch (``fast_dev_run``) on the CPU, worker-less,
    with 16 hidden units."""
    return [
        "fit",
        "--config", str(RECIPE_CONF / config),
        "--data.root", str(data_root),
        "--data.num_workers", "0",
        "--run_dir", str(run_dir),
        "--model.architecture.hidden_size", "16",
        "--trainer.accelerator", "cpu",
        "--trainer.fast_dev_run", "true",
        *extra,
    ]  # fmt: skip


def recipe_args(subcommand: str, data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Recipe arguments (for a subprocess) for a small model on the synthetic folder, one
    worker-less CPU; the progress bar and model summary stay on, as users run them."""
    return [
        subcommand,
        "--config", str(RECIPE_CONF / "demo.yaml"),
        "--data.root", str(data_root),
        "--data.labels", json.dumps(LABELS),
        "--data.num_workers", "0",
        "--data.unknown_fraction", "null",
        "--data.testing_percent", "20",
        "--run_dir", str(run_dir),
        "--model.architecture.hidden_size", "32",
        "--model.architecture.num_layers", "1",
        "--trainer.accelerator", "cpu",
        *extra,
    ]  # fmt: skip


# -- audio -----------------------------------------------------------------------------------


def tone(
    freq: float, rate: int = SAMPLE_RATE, seconds: float = 1.0, amp: float = 0.5
) -> np.ndarray:
    """Sine wave, float32, shape (round(seconds * rate),)."""
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_tone(
    path: Path, freq: float = 440.0, rate: int = SAMPLE_RATE, seconds: float = 1.0, amp: float = 0.3
) -> Path:
    """A 16-bit WAV file of a sine wave; returns ``path``."""
    sf.write(path, tone(freq, rate, seconds, amp), rate, subtype="PCM_16")
    return path


def tone_burst(
    seconds: float = 1.0,
    start_s: float = 0.0,
    length_s: float = 1.0,
    freq: float = 440.0,
    amp: float = 0.5,
    noise: float = 0.001,
    seed: int = 0,
) -> np.ndarray:
    """Quiet white noise (standard deviation ``noise``, seeded) with a sine of ``freq`` from
    ``start_s`` for ``length_s``, float32 at 16 kHz: a stand-in for a spoken word."""
    wave = noise * np.random.default_rng(seed).standard_normal(round(seconds * SAMPLE_RATE))
    a = round(start_s * SAMPLE_RATE)
    b = min(wave.size, round((start_s + length_s) * SAMPLE_RATE))
    wave[a:b] += amp * np.sin(2 * np.pi * freq * np.arange(a, b) / SAMPLE_RATE)
    return wave.astype(np.float32)


def peak_hz(wave: np.ndarray | torch.Tensor, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the largest FFT bin of a 1-D waveform (numpy array or CPU tensor)."""
    wave = np.asarray(wave, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1 / rate)[np.argmax(spectrum)])


def assert_one_line_error(err: pytest.ExceptionInfo[AudioError], path: Path, problem: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and "\r" not in msg
    assert path.name in msg
    assert msg == f"{path}: {err.value.problem}"
    assert problem in err.value.problem


def fake_sounddevice(blocks, overflow_at=(), rates=(48000,), max_channels=2):
    """A stand-in for the sounddevice module whose stream replays ``blocks`` on start()."""
    sd = types.ModuleType("sounddevice")
    devices = [
        {"name": "Speakers", "max_input_channels": 0, "default_samplerate": 48000.0},
        {"name": "USB Mic", "max_input_channels": max_channels, "default_samplerate": 48000.0},
    ]

    def query_devices(device=None, kind=None):
        if kind == "input":
            return {**devices[1], "index": 1}
        return devices

    sd.query_devices = query_devices
    sd.opened = []
    sd.calls = []  # stop/abort/close, in order

    def check_input_settings(device, channels, dtype, samplerate):
        if samplerate not in rates or channels > max_channels:
            raise ValueError("Invalid sample rate")

    class InputStream:
        def __init__(self, device, channels, samplerate, blocksize, dtype, callback):
            self.kwargs = dict(device=device, channels=channels, samplerate=samplerate)
            self.blocksize, self.callback = blocksize, callback
            sd.opened.append(self)

        def start(self):
            for i, block in enumerate(blocks):
                assert block.shape == (self.blocksize, self.kwargs["channels"])
                status = types.SimpleNamespace(input_overflow=i in overflow_at)
                self.callback(block, len(block), None, status if i in overflow_at else None)

        def stop(self):
            sd.calls.append("stop")

        def abort(self):
            sd.calls.append("abort")

        def close(self):
            sd.calls.append("close")

    sd.check_input_settings = check_input_settings
    sd.InputStream = InputStream
    return sd


# -- a virtual microphone: a PulseAudio null sink ------------------------------------------


class Pulse:
    """A private PulseAudio daemon with one null sink, for one test."""

    SINK = "speech_gru_test"

    def __init__(self, root: Path) -> None:
        self.socket = root / "native"
        root.mkdir(parents=True, exist_ok=True)
        self.log = root / "pulseaudio.log"
        self.env = {
            **os.environ,
            "PULSE_RUNTIME_PATH": str(root),
            "PULSE_STATE_PATH": str(root),
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_SOURCE": f"{self.SINK}.monitor",
            "PULSE_SINK": self.SINK,
        }
        self.process = subprocess.Popen(
            [
                "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1",
                "--disallow-exit", "--use-pid-file=no", "--log-target=stderr",
                "-L", f"module-null-sink sink_name={self.SINK} rate=16000 channels=1",
                "-L", f"module-native-protocol-unix socket={self.socket}",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),  # a file: a pipe nobody reads would fill and stall it
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ready = subprocess.run(["pactl", "info"], env=self.env, capture_output=True)
            if ready.returncode == 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        pytest.skip("pulseaudio could not start a null sink here")

    def play(self, path: Path) -> None:
        subprocess.run(["paplay", f"--device={self.SINK}", str(path)], env=self.env, check=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_pulse(root: Path) -> Pulse:
    """A running ``Pulse`` keeping its files in ``root``; the test is skipped when PulseAudio's
    tools or PortAudio are missing. Its ``env`` makes a subprocess's default (or ``pulse``)
    input device the sink's monitor: what ``play`` plays is what that process records."""
    missing = [tool for tool in ("pulseaudio", "paplay", "pactl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make install sets them up)")
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pytest.skip("PortAudio is not installed (make install sets it up)")
    return Pulse(root)


def print_config(capsys: pytest.CaptureFixture, *args: str) -> dict:
    """The config the recipe's ``fit`` would run with (``--print_config``)."""
    import yaml

    from speech_gru.train.training import main as train_main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def default_ctrl_c() -> None:
    """``preexec_fn`` of a child process a test stops with Ctrl-C (SIGINT): a shell starts
    a background job (``make test &``) with SIGINT ignored, its children inherit that, and
    Python then installs no KeyboardInterrupt handler, so the child would not stop."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- data folders ----------------------------------------------------------------------------


def tone_folder(
    root: Path,
    tones: Mapping[str, float],
    speakers: int,
    burst: bool = False,
    short_clips: bool = False,
) -> Path:
    """A Speech-Commands-layout folder: one clip per speaker (``{s:08x}_nohash_0.wav``) in
    each word folder of ``tones`` ({word: Hz}), and white noise in ``_background_noise_``.

    A clip is its word's tone, a few per cent higher for some speakers, over quiet noise:
    the whole clip, or with ``burst`` a word-long burst around its middle. With
    ``short_clips`` a third of the speakers' clips are 1 s long, the rest 15/16 or 14/16 s.
    """
    rng = np.random.default_rng(0)
    for word, hz in tones.items():
        (root / word).mkdir(parents=True)
        for s in range(speakers):
            n = SAMPLE_RATE - (1000 * (s % 3) if short_clips else 0)
            t = np.arange(n) / SAMPLE_RATE
            on = (t > 0.25 + 0.01 * (s % 7)) & (t < 0.65 + 0.01 * (s % 5)) if burst else 1.0
            f = hz * (1 + 0.02 * (s % 5))
            wave = 0.3 * on * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(n)
            write_wav(root / word / f"{s:08x}_nohash_0.wav", wave)
    (root / "_background_noise_").mkdir()
    write_wav(
        root / "_background_noise_" / "white.wav", 0.05 * rng.standard_normal(3 * SAMPLE_RATE)
    )
    return root


# -- tiny checkpoints ------------------------------------------------------------------------


class TinyData(L.LightningDataModule):
    """Four random clips; its hyper-parameters stand in for the recipe's data settings."""

    def __init__(self, root: str = "synthetic/commands", version: str = "folder") -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        waves = 0.1 * torch.randn(4, SAMPLE_RATE, generator=g)
        return DataLoader(TensorDataset(waves, torch.tensor([0, 1, 2, 3])), batch_size=2)

    def val_dataloader(self) -> DataLoader:
        return self.train_dataloader()


STREAM_FEATURES = FeatureConfig(n_fft=640, hop_length=320)
"""conf/stream_gru.yaml's framing: 40 ms windows every 20 ms."""


def tiny_checkpoint(
    path: Path, cell: str = "gru", forward: bool = False, conv_stem: int = 0
) -> Path:
    """A checkpoint as the recipe writes one (labels TINY_LABELS), after one training step
    on random clips; ``forward``: a streaming model framed as conf/stream_gru.yaml;
    ``conv_stem``: that many channels of convolutional stem."""
    torch.manual_seed(0)
    kind = {"direction": "forward", "feature_norm": "global"} if forward else {}
    architecture = ArchitectureConfig(
        cell=cell, hidden_size=16, num_layers=2, attention_dim=8, conv_stem=conv_stem, **kind
    )
    module = KeywordSpotter(
        labels=TINY_LABELS,
        architecture=architecture,
        features=STREAM_FEATURES if forward else FeatureConfig(),
        batch_size=2,
    )
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(module, datamodule=TinyData())
    trainer.save_checkpoint(path)
    return path


# -- forward (streaming) models ---------------------------------------------------------------


def forward_model(cell: str = "gru", num_classes: int = 5, seed: int = 0) -> KeywordModel:
    """A random forward model in eval mode with non-trivial global feature statistics."""
    torch.manual_seed(seed)
    architecture = ArchitectureConfig(
        cell=cell, hidden_size=24, num_layers=2, direction="forward", feature_norm="global"
    )
    model = KeywordModel(ModelConfig.build(num_classes, architecture, STREAM_FEATURES))
    gen = torch.Generator().manual_seed(seed + 1)
    model.norm.running_mean.copy_(-30 + 10 * torch.randn(STREAM_FEATURES.n_mfcc, generator=gen))
    model.norm.running_var.copy_(20 + 80 * torch.rand(STREAM_FEATURES.n_mfcc, generator=gen))
    model.norm.initialized.fill_(True)
    return model.eval()


def chirps(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """(B, N) chirp-plus-noise waveforms, different for each row."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rows = [
        0.3 * torch.sin(2 * math.pi * (200 + 150 * i) * t * (1 + t)) * (t % 1 < 0.6)
        + 0.02 * torch.randn(t.numel(), generator=gen)
        for i in range(batch)
    ]
    return torch.stack(rows)


# -- waveform augmentation in the datamodule -------------------------------------------------


def augmenting_datamodule() -> SpeechCommandsDataModule:
    """A datamodule (no data) that always adds noise, shifts and changes speed in training."""
    dm = SpeechCommandsDataModule(
        root="unused", download=False, noise_prob=1.0, snr_low=5.0, snr_high=5.0,
        time_shift_ms=50.0, speed_low=0.9, speed_high=1.1,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    dm._bank = NoiseBank([0.1 * torch.randn(3 * SAMPLE_RATE, generator=gen)], SAMPLE_RATE)
    return dm


def training_trainer(batches_before: int, rank: int = 0) -> SimpleNamespace:
    """What ``on_after_batch_transfer`` reads of a trainer in the middle of ``fit``."""
    progress = SimpleNamespace(total=SimpleNamespace(ready=batches_before))
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(training=True, fit_loop=loop, global_rank=rank)


# -- models whose outcome is known -----------------------------------------------------------


def confident_checkpoint(path: Path, label: str = "yes") -> Path:
    """``tiny_checkpoint`` whose head gives ``label`` (one of TINY_LABELS) a probability
    above 0.999 whatever the audio: classifications and stream events known in advance."""
    tiny_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    bias = checkpoint["state_dict"]["model.head.1.bias"]  # (C,) after dropout + linear
    bias.zero_()
    bias[TINY_LABELS.index(label)] = 20.0
    torch.save(checkpoint, path)
    return path


# -- a recording of keywords -----------------------------------------------------------------

SEQUENCE = ["yes", "down", "no", "up"]


def keyword_sequence(commands_dir: Path, path: Path) -> Path:
    """``SEQUENCE`` spoken by training speakers of ``commands_dir``, 2.5 s apart, over quiet
    noise: 1 s lead-in and 1.5 s after the last word; written to ``path``."""
    from speech_gru.core.audio import load_audio
    from speech_gru.train.corpus import speaker_of, which_set

    rng = np.random.default_rng(0)
    parts = [0.002 * rng.standard_normal(16000)]
    for word in SEQUENCE:
        files = sorted((commands_dir / word).glob("*.wav"))
        clip = next(
            p for p in files if which_set(speaker_of(p), 10, 20, "speech_gru") == "training"
        )
        parts += [load_audio(clip), 0.002 * rng.standard_normal(24000)]
    sf.write(path, np.concatenate(parts).astype(np.float32), 16000, subtype="PCM_16")
    return path
