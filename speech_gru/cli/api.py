"""The Python face of the package: load a model, label clips, detect keywords in streams.

``Spotter.load`` takes a training checkpoint, an ONNX export or, with
``trust_torchscript=True``, a TorchScript export
(``speech_gru.runtime.classifier.load_classifier``)::

    from speech_gru import Spotter

    spotter = Spotter.load("kws.onnx")
    spotter.classify("clip.wav", top_k=3)         # [Prediction('yes', 0.97), ...]
    for event in spotter.events("recording.wav"):  # or a 16 kHz array, or None: the microphone
        print(event.time_s, event.label, event.score)

``classify`` labels one clip as ``speech-gru transcribe`` labels a short one: its loudest
window of the model's length (``audio.loudest_window``; one second for Speech Commands
models). ``events`` runs the loop of ``speech-gru stream``:
``source.open_source`` for a file or the microphone, ``StreamingDetector.events``, and the
settings ``factory.detector_config`` gives (each one given here, else the model's
calibrated operating point, else ``DetectorConfig``'s default), with a detector from the
same factory as the command's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from speech_gru.core.audio import (
    MAX_AMPLITUDE,
    SAMPLE_RATE,
    AudioError,
    amplitude_problem,
    load_audio,
    loudest_window,
    printable,
)
from speech_gru.runtime.bundled import bundled_model
from speech_gru.runtime.checkpoint import OperatingPoint
from speech_gru.runtime.classifier import Classifier
from speech_gru.runtime.detector import DetectorConfig, Event, StreamingDetector
from speech_gru.runtime.factory import (
    FILE_BATCH_WINDOWS,
    LIVE_BATCH_WINDOWS,
    detector_config,
    load_model,
    new_detector,
)
from speech_gru.runtime.source import Source, array_chunks, open_source

MICROPHONE = "mic"
"""The ``source`` of ``Spotter.events`` that means the microphone, as ``None`` does."""

AudioInput = str | os.PathLike | np.ndarray
"""A file path (any format ``audio.load_audio`` reads) or a 1-D float waveform at 16 kHz."""


class Prediction(NamedTuple):
    """One label of a clip and its probability."""

    label: str
    score: float


class Spotter:
    """A keyword spotter ready to use: one model, its labels and its operating point.

    Args:
        classifier: the loaded model (``Spotter.load`` makes one from a file).

    Attributes:
        classifier: the ``infer.Classifier`` underneath.
    """

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    @classmethod
    def load(
        cls, path: str | os.PathLike | None = None, trust_torchscript: bool = False
    ) -> Spotter:
        """Load a checkpoint (``.ckpt``), an ONNX export (``.onnx``) or, when trusted, a
        TorchScript export (``.pt``); with no path, the bundled model
        (``speech_gru.runtime.bundled.DEFAULT``: the ten Speech Commands keywords).

        A checkpoint is read weights-only and an ONNX file is a graph: neither carries
        code, so either is safe to take from anyone. A TorchScript file carries code that
        loading runs (as ``torch.jit.load`` does), so it loads only with
        ``trust_torchscript=True``, for files from a source you trust. The model is not
        run while loading.

        Args:
            path: the model file; what it is (by content) must agree with its name. None:
                the bundled model, said on stderr in one line.
            trust_torchscript: load a TorchScript file, running its code.

        Raises:
            ModelLoadError: a missing or unreadable file, a name that disagrees with the
                content, or a TorchScript file without ``trust_torchscript``, in one line
                naming it.
        """
        if path is None:
            model = bundled_model()
            print(f"model: the bundled {model.name} ({model.path})", file=sys.stderr)
            path = model.path
        return cls(load_model(path, trust_torchscript))

    @property
    def labels(self) -> list[str]:
        """Class names, in the model's output order."""
        return list(self.classifier.labels)

    @property
    def kind(self) -> str:
        """``"checkpoint"``, ``"torchscript"`` or ``"onnx"``."""
        return self.classifier.kind

    @property
    def path(self) -> Path:
        """The file the model was loaded from."""
        return self.classifier.source

    @property
    def operating_point(self) -> OperatingPoint | None:
        """The detector settings the model was calibrated at (None: not calibrated)."""
        return self.classifier.operating_point

    def __repr__(self) -> str:
        return f"Spotter({printable(self.path)!r}, {self.kind}, {len(self.labels)} labels)"

    def classify(self, audio: AudioInput, top_k: int = 1) -> list[Prediction]:
        """The most probable labels of one clip.

        A clip longer than the model's window (``Classifier.window_s``, one second for
        Speech Commands models) is labelled by its loudest window, a shorter one padded
        with silence (use ``events`` to find keywords in a long recording).

        Args:
            audio: a file path, or a 1-D float waveform at 16 kHz.
            top_k: how many labels to return (at most all of them).

        Returns:
            ``top_k`` predictions, most probable first.

        Raises:
            AudioError: the file cannot be read, or the waveform is empty, not finite or
                has samples beyond ``audio.MAX_AMPLITUDE`` (1000).
            ValueError: ``top_k`` below 1, or an array that is not a 1-D float waveform.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        wave = _read(audio)
        window = loudest_window(wave, self.classifier.window)  # the model's window
        probs = self.classifier.predict([window])[0].numpy()  # (C,)
        order = np.argsort(-probs, kind="stable")[:top_k]
        return [Prediction(self.classifier.labels[i], float(probs[i])) for i in order]

    def detector_config(self, live: bool = False, **settings: Any) -> DetectorConfig:
        """The settings ``events`` runs at: each one given here, else the model's operating
        point, else ``DetectorConfig``'s default (as ``speech-gru stream`` resolves its
        flags). A given ``threshold`` holds for every keyword unless ``thresholds`` is
        given too.

        Args:
            live: score each window as soon as its audio arrives (the microphone) rather
                than in groups of ``FILE_BATCH_WINDOWS``; ``batch_windows`` overrides it.
            **settings: ``DetectorConfig`` fields (``threshold``, ``thresholds``, ``hop_s``,
                ``average_s``, ``refractory_s``, ``batch_windows``, ``window_s``).

        Raises:
            TypeError: a name that is not such a field.
            ValueError: a value ``DetectorConfig`` refuses, or a hop that would skip audio
                for a model that carries its state (``factory.SettingError``).
        """
        batch = LIVE_BATCH_WINDOWS if live else FILE_BATCH_WINDOWS
        return detector_config(self.classifier, settings, batch)

    def events(
        self,
        source: AudioInput | None = None,
        *,
        device: int | str | None = None,
        **settings: Any,
    ) -> Iterator[Event]:
        """Keywords detected in a stream, as they are found: the loop of ``speech-gru
        stream`` (``StreamingDetector.events``) at the model's operating point.

        The microphone runs until the loop over the events stops (``break``, an exception,
        Ctrl-C); the device is closed then. A file is read block by block.

        Args:
            source: a file path, a 1-D float waveform at 16 kHz, or ``None`` (or ``"mic"``)
                for the microphone.
            device: the microphone's index or a part of its name (None: the default input).
            **settings: detector settings overriding the operating point (see
                ``detector_config``), e.g. ``threshold=0.9``.

        Returns:
            An iterator of ``stream.Event`` (label, score, ``time_s`` in stream seconds,
            and the span ``start_s``-``end_s`` of the window that scored highest).

        Raises:
            AudioError: a file that cannot be read (raised while iterating), a waveform
                that is empty or not finite, or no usable microphone (``MicrophoneError``,
                raised here).
            TypeError, ValueError: see ``detector_config``; an array that is not a 1-D
                float waveform.
        """
        live = source is None or (isinstance(source, str) and source == MICROPHONE)
        config = self.detector_config(live=live, **settings)
        block = config.hop * config.batch_windows  # one group of windows a chunk
        if live:
            opened = open_source(None, config.hop_s, device=device)
        elif isinstance(source, str | os.PathLike):
            opened = open_source(source, block / SAMPLE_RATE)
        else:
            opened = Source("waveform", array_chunks(_waveform(source), block))
        return _run(new_detector(self.classifier, config), opened)


def _run(detector: StreamingDetector, source: Source) -> Iterator[Event]:
    with source:  # starts and stops a microphone, also when the caller stops early
        yield from detector.events(source, ends=not source.live)


def _read(audio: AudioInput) -> np.ndarray:
    """A mono 16 kHz float32 waveform from a file path or an array."""
    if isinstance(audio, str | os.PathLike):
        return load_audio(audio)
    return _waveform(audio)


def _waveform(audio: object) -> np.ndarray:
    """A checked copy of an in-memory waveform as (N,) float32.

    Raises:
        ValueError: not a 1-D array of floats.
        AudioError: no samples, NaN or infinite ones, or ones beyond ``MAX_AMPLITUDE``.
    """
    wave = np.asarray(audio)
    if wave.ndim != 1:
        raise ValueError(f"a waveform must be 1-D (mono, 16 kHz), got shape {wave.shape}")
    if not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(
            f"a waveform must hold floats in [-1, 1], got {wave.dtype} (for int16 PCM divide "
            "by 32768)"
        )
    if wave.size == 0:
        raise AudioError("waveform", "no samples")
    if not np.isfinite(wave).all():
        raise AudioError("waveform", "holds NaN or infinite samples")
    # Checked in the caller's precision, before the cast: float64 1e300 becomes inf.
    peak = float(np.max(np.abs(wave)))
    if peak > MAX_AMPLITUDE:
        raise AudioError("waveform", amplitude_problem(peak))
    return wave.astype(np.float32)
