"""What a detector scores windows with: a ``Scorer``, and for a model that carries its
state from frame to frame, the ``Stepper`` protocol and the ``StatefulScorer`` around it.

A forward model (``direction: forward``) runs frame by frame instead of window by
window: a ``Stepper`` takes new audio and its state and answers the probabilities of the
frames that audio completes (loading makes one: ``speech_gru.runtime.classifier``'s
``ModelStepper`` and ``ExportStepper``). ``StatefulScorer`` turns it into the ``Scorer`` a
``StreamingDetector`` calls with every window of one stream.

Loading and the detector (``speech_gru.runtime.detector``) both import this module, so
neither imports the other; it needs numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

Scorer = Callable[[np.ndarray], np.ndarray]
"""Maps (B, window) float32 waveforms to (B, C) class probabilities."""


class Hops(Protocol):
    """The detector settings a ``StatefulScorer`` follows (a ``DetectorConfig``): the
    samples between windows and of a window, and the same in seconds for messages."""

    @property
    def hop(self) -> int: ...

    @property
    def window(self) -> int: ...

    @property
    def hop_s(self) -> float: ...

    @property
    def window_s(self) -> float: ...


class Stepper(Protocol):
    """A model that carries its state from frame to frame (a forward model: a checkpoint's
    ``ModelStepper`` or a streaming export's ``ExportStepper``, both in
    ``speech_gru.runtime.classifier``).

    Frame ``j`` covers samples ``[j * frame_hop, j * frame_hop + n_fft)`` of the stream;
    its output is the probabilities of the window of ``window`` samples ending with it
    (softmax of each class's largest frame logit over the window's frames, as the model
    was trained on clips).
    """

    frame_hop: int
    n_fft: int

    def start(self, batch: int = 1) -> Any:
        """The state before any audio, for ``batch`` streams."""

    def __call__(self, audio: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """(B, n) new samples -> (B, k, C) probabilities of the k frames they complete,
        and the next state."""


class StatefulScorer:
    """A ``Scorer`` for a model that carries its state: every window's probabilities
    for one frame's cost per ``frame_hop`` of audio, instead of a whole window's.

    ``StreamingDetector`` calls it with every window of one stream, in order, ``hop``
    samples apart (from ``window`` on); it feeds the model the audio it has not seen
    (the first window whole, then each window's last ``hop`` samples) and answers, for
    each window, the output of the last frame that window completes. So one instance
    serves one stream at a time; ``reset`` (which the detector calls when it resets)
    starts a new one.

    Args:
        stepper: the model.
        config: the detector's settings (``hop``, ``window``; ``hop`` at most ``window``,
            so that no audio falls between windows).
    """

    def __init__(self, stepper: Stepper, config: Hops) -> None:
        self.check(config)
        self.stepper = stepper
        self.hop = config.hop
        self.window = config.window
        self.frames_run = 0
        self.reset()

    @staticmethod
    def check(config: Hops) -> None:
        """Raise ValueError (one line) unless these settings let the model hear every
        sample: a hop longer than the window would skip audio between windows."""
        if config.hop > config.window:
            raise ValueError(
                f"a model that carries its state hears every sample: hop {config.hop_s:g} s "
                f"must not exceed the {config.window_s:g} s window"
            )

    def reset(self) -> None:
        """Forget the stream: zero state, no samples."""
        self.state = self.stepper.start(1)
        self.fed = 0  # samples given to the model
        self.done = 0  # frames the model has completed
        self.last: np.ndarray | None = None  # (C,) output of the last completed frame

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)  # (B, window)
        first = windows[:1] if self.fed == 0 else windows[:1, -self.hop :]
        audio = np.concatenate([first, windows[1:, -self.hop :].reshape(1, -1)], axis=1)
        probs, self.state = self.stepper(audio, self.state)  # (1, k, C)
        probs = probs[0]
        done_before = self.done
        self.fed += audio.shape[1]
        self.done += len(probs)
        self.frames_run += len(probs)
        ends = self.fed - self.hop * np.arange(len(windows) - 1, -1, -1)  # (B,)
        out = []
        for end in ends:  # the last frame each window completes
            frame = (int(end) - self.stepper.n_fft) // self.stepper.frame_hop
            out.append(self.last if frame < done_before else probs[frame - done_before])
        if len(probs):
            self.last = probs[-1]
        return np.stack(out)
