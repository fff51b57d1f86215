"""speech_gru: keyword spotting with MFCC features and a bidirectional GRU.

The Python API (``speech_gru.cli.api``)::

    from speech_gru import Spotter

    spotter = Spotter.load("model.ckpt")   # or a TorchScript / ONNX export
    spotter.classify("clip.wav")           # [Prediction(label='yes', score=0.97)]
    for event in spotter.events(None):     # the microphone; or a file, or an array
        ...

Its names are imported when first used, so ``import speech_gru`` loads neither torch
nor Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Spotter": "speech_gru.cli.api",
    "Prediction": "speech_gru.cli.api",
    "Event": "speech_gru.runtime.detector",
    "DetectorConfig": "speech_gru.runtime.detector",
    "OperatingPoint": "speech_gru.runtime.checkpoint",
    "AudioError": "speech_gru.core.audio",
    "MicrophoneError": "speech_gru.runtime.mic",
    "ModelLoadError": "speech_gru.runtime.checkpoint",
}

__all__ = [
    "AudioError",
    "DetectorConfig",
    "Event",
    "MicrophoneError",
    "ModelLoadError",
    "OperatingPoint",
    "Prediction",
    "Spotter",
    "__version__",
]

if TYPE_CHECKING:
    from speech_gru.cli.api import Prediction, Spotter
    from speech_gru.core.audio import AudioError
    from speech_gru.runtime.checkpoint import ModelLoadError, OperatingPoint
    from speech_gru.runtime.detector import DetectorConfig, Event
    from speech_gru.runtime.mic import MicrophoneError


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'speech_gru' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
