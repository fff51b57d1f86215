"""From a model file and settings to a ready ``StreamingDetector``: the one place that wires
classifier -> detector settings -> scorer -> detector.

Every user of the detector goes through here: the commands (``stream``, ``transcribe``,
``serve``, ``evaluate-stream``, ``calibrate``), ``Transcriber``, the server (one detector per
WebSocket client) and the Python API (``Spotter``). So the rule of where a setting comes from
is written once: each setting given, else the model's calibrated operating point, else
``DetectorConfig``'s default; the window is the model's own (``Classifier.window_s``)
unless given; and a model that carries its state is refused a hop that would skip audio
or a window other than its own.

Settings arrive as a plain mapping of ``DetectorConfig`` field names (the command line
passes the flags that were given, the API its keyword arguments); nothing here knows about
argument parsing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from speech_gru.runtime.classifier import Classifier, load_classifier
from speech_gru.runtime.detector import DetectorConfig, StreamingDetector
from speech_gru.runtime.stateful import Scorer, StatefulScorer

FILE_BATCH_WINDOWS = 32
"""Windows per model call when the audio is all there (files, arrays, built recordings): a
larger batch is faster, and the events do not depend on it."""

LIVE_BATCH_WINDOWS = 1
"""Windows per model call on a live stream (a microphone, a browser): each window is scored
as soon as its audio arrives."""


class SettingError(ValueError):
    """Detector settings this model cannot run at; ``str()`` is one line.

    Attributes:
        name: the ``DetectorConfig`` field at fault (``"hop_s"``).
        value: its value.
    """

    def __init__(self, name: str, value: object, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.value = value


def load_model(path: str | os.PathLike, trust_torchscript: bool = False) -> Classifier:
    """Load a checkpoint, an ONNX export or, with ``trust_torchscript``, a TorchScript
    export, which runs code the file carries (``classifier.load_classifier``).

    Raises:
        ModelLoadError: a missing or unreadable file, a name that disagrees with the
            content, or an untrusted TorchScript file, in one line naming it.
    """
    return load_classifier(path, trust_torchscript)


def detector_config(
    classifier: Classifier | None,
    given: Mapping[str, Any] | None = None,
    batch_windows: int = FILE_BATCH_WINDOWS,
    calibrated: bool = True,
) -> DetectorConfig:
    """The settings a detector of ``classifier`` runs at.

    A setting that has a flag (``DetectorConfig.flags``: hop, average, threshold,
    refractory) is the one ``given``, else the classifier's calibrated operating point (when
    it has one and ``calibrated``), else the default; a given ``threshold`` holds for every
    keyword (the point's per-keyword ones are dropped). The window is the model's
    (``classifier.window_s``: the length it was trained on). Other fields given
    (``thresholds``, ``window_s``, ``batch_windows``) are set as they are, after that.

    Args:
        classifier: the model (None: no model, only the defaults and ``given``).
        given: ``DetectorConfig`` field names and values; a value of None counts as not given.
        batch_windows: windows per model call (``FILE_BATCH_WINDOWS`` or
            ``LIVE_BATCH_WINDOWS``), unless ``given`` sets ``batch_windows``.
        calibrated: start from the model's operating point (False: from the defaults, as
            calibration does, which chooses a new one).

    Raises:
        TypeError: a name that is not such a field.
        SettingError: settings the model cannot run at (``check``).
        ValueError: a value ``DetectorConfig`` refuses.
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    # The sample rate is not the caller's to set: every source gives 16 kHz.
    names = {f.name for f in dataclasses.fields(DetectorConfig)} - {"sample_rate"}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(
            f"unknown detector setting {unknown[0]!r}; choose from {', '.join(sorted(names))}"
        )
    flags = {f.name for f in DetectorConfig.flags()}
    point = getattr(classifier, "operating_point", None) if calibrated else None
    config = DetectorConfig.resolve(
        point, {k: v for k, v in given.items() if k in flags}, batch_windows
    )
    window_s = getattr(classifier, "window_s", None)  # None: no model, or one that won't say
    if window_s is not None:
        config = dataclasses.replace(config, window_s=window_s)
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if k not in flags})
    return check(classifier, config)


def check(classifier: Classifier | None, config: DetectorConfig) -> DetectorConfig:
    """``config``, unless the model carries its state and the hop would skip audio
    (``StatefulScorer.check``) or the window is not the model's (its scores are over its
    own window, whatever the detector's).

    Raises:
        SettingError: naming ``hop_s`` or ``window_s``.
    """
    if getattr(classifier, "stepper", None) is not None:
        own = getattr(classifier, "window_s", None)
        if own is not None and config.window != round(own * config.sample_rate):
            raise SettingError(
                "window_s",
                config.window_s,
                f"a model that carries its state scores its own {own:g} s window, "
                f"not {config.window_s:g} s",
            )
        try:
            StatefulScorer.check(config)
        except ValueError as err:
            raise SettingError("hop_s", config.hop_s, str(err)) from None
    return config


def file_config(config: DetectorConfig) -> DetectorConfig:
    """``config`` for audio that is all there (a file, an upload): ``FILE_BATCH_WINDOWS``."""
    return dataclasses.replace(config, batch_windows=FILE_BATCH_WINDOWS)


def new_detector(
    classifier: Classifier,
    config: DetectorConfig,
    scorer: Scorer | None = None,
    keep_trace: bool = False,
) -> StreamingDetector:
    """A fresh detector for one stream (a file, a microphone, a client): its own scorer, so
    a model that carries its state starts from zero.

    Args:
        classifier: the model.
        config: the settings (``detector_config``).
        scorer: what scores the windows instead of ``classifier.scorer(config)`` (the
            server's, which batches all clients' model calls).
        keep_trace: record every hop's averaged posteriors (``StreamingDetector.trace``).
    """
    scorer = classifier.scorer(config) if scorer is None else scorer
    return StreamingDetector(scorer, classifier.labels, config, keep_trace=keep_trace)


@dataclass(frozen=True)
class Runtime:
    """A loaded model at its detector settings: makes a fresh detector for each stream.

    Attributes:
        classifier: the model.
        config: the settings its detectors run at.
    """

    classifier: Classifier
    config: DetectorConfig

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        given: Mapping[str, Any] | None = None,
        batch_windows: int = FILE_BATCH_WINDOWS,
    ) -> Runtime:
        """Load the model at ``path`` and resolve its settings (``detector_config``).

        Raises:
            ModelLoadError: the file cannot be loaded, in one line naming it.
            SettingError, TypeError, ValueError: see ``detector_config``.
        """
        classifier = load_model(path)
        return cls(classifier, detector_config(classifier, given, batch_windows))

    def detector(self, scorer: Scorer | None = None, keep_trace: bool = False) -> StreamingDetector:
        """A fresh detector for one stream (``new_detector``)."""
        return new_detector(self.classifier, self.config, scorer, keep_trace)
