"""Look inside a trained model: its gates over one clip, or over a whole recording.

``explain_file`` runs a checkpoint's model on one audio file and records, per frame, the
attention weight and the mean update-gate (z) and reset-gate (r) activity of every GRU
layer and direction. A forward (streaming) model runs over the whole recording from zero
state, as ``stream`` runs it, and records instead of attention each frame's keyword scores
(the window ending there, as the detector reads them), so the plot shows when the GRU
holds its memory and when it resets around each keyword. ``plot_explanation`` draws them
on one time axis under the waveform and the MFCCs, and ``Explanation.to_dict`` gives the
same numbers for ``--json``. The gates come from ``speech_gru.core.explicit_gru.ExplicitGRU`` loaded
with the encoder's weights; its outputs are checked against the encoder's, and the
prediction, attention and scores come from the real model.

The model card (``speech-gru info``) lives in ``speech_gru.analysis.card``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from speech_gru.core.audio import fit_length, load_audio, loudest_start
from speech_gru.core.explicit_gru import DIRECTIONS, ExplicitGRU
from speech_gru.core.labels import is_keyword
from speech_gru.core.model import KeywordModel, window_max
from speech_gru.core.plots import pyplot, save_figure

if TYPE_CHECKING:
    from speech_gru.analysis.gradients import ClipGradients

ENCODER_TOLERANCE = 1e-4  # largest difference allowed between ExplicitGRU and the encoder


class ExplainError(Exception):
    """The model cannot be explained (e.g. an LSTM); ``str()`` is one line."""


@dataclass
class GateTrack:
    """Mean gate activity over the units of one layer and direction, per frame.

    Attributes:
        layer: 1 for the layer nearest the input.
        direction: ``"forward"`` or ``"backward"``.
        z: (T,) mean update gate: near 1, the memory is carried forward unchanged.
        r: (T,) mean reset gate: near 0, the candidate ignores the memory.
    """

    layer: int
    direction: str
    z: np.ndarray
    r: np.ndarray


@dataclass
class Explanation:
    """What the model saw and did on one clip.

    Attributes:
        source: the audio file.
        labels: class names, in output order.
        probabilities: (C,) softmax of the logits.
        wave: (N,) the explained samples (the loudest window of the model's length,
            zero-padded if shorter; a forward model's whole recording).
        sample_rate: of ``wave``.
        start_s: where ``wave`` starts in the file, in seconds.
        file_s: duration of the file, in seconds.
        times: (T,) centre of each frame, in seconds from the start of the file.
        frame_s: seconds between frames (the hop).
        features: (T, F) normalised MFCCs: the GRU's input.
        attention: (T,) attention weights (sum to 1); for a forward model, one-hot on the
            frame whose logit became the predicted class's maximum.
        gates: one ``GateTrack`` per layer and direction.
        scores: (T, C) for a forward model, each frame's probabilities of the model's
            window ending there (what the streaming detector reads); None for a
            bidirectional one.
        window_s: the model's window (``ModelConfig.window_s``), in seconds.
    """

    source: str
    labels: list[str]
    probabilities: np.ndarray
    wave: np.ndarray
    sample_rate: int
    start_s: float
    file_s: float
    times: np.ndarray
    frame_s: float
    features: np.ndarray
    attention: np.ndarray
    gates: list[GateTrack] = field(default_factory=list)
    scores: np.ndarray | None = None
    window_s: float = 1.0

    def peaks(self, count: int = 3) -> list[tuple[str, float, float]]:
        """The ``count`` keywords of highest peak window score over a recording (forward
        models): (label, score, time in s), highest first; [] without ``scores``."""
        if self.scores is None:
            return []
        keywords = [i for i, label in enumerate(self.labels) if is_keyword(label)]
        best = sorted(keywords, key=lambda i: -self.scores[:, i].max())[:count]
        return [
            (
                self.labels[i],
                float(self.scores[:, i].max()),
                float(self.times[self.scores[:, i].argmax()]),
            )
            for i in best
        ]

    def summary(self) -> str:
        """``yes 0.83`` (the prediction on a clip), or for a recording its peaks:
        ``peaks: yes 0.71 at 1.40 s, no 0.66 at 6.80 s``."""
        if self.scores is None:
            return f"{self.predicted} {self.score:.2f}"
        peaks = ", ".join(f"{label} {score:.2f} at {t:.2f} s" for label, score, t in self.peaks())
        return f"peaks: {peaks}"

    @property
    def predicted(self) -> str:
        return self.labels[int(np.argmax(self.probabilities))]

    @property
    def score(self) -> float:
        return float(np.max(self.probabilities))

    def window_note(self) -> str:
        """One line on which part of the file was explained ("" for a clip of the model's
        window or a whole recording)."""
        if self.scores is not None:
            return ""
        window_s = self.wave.size / self.sample_rate
        if self.file_s > window_s:
            return (
                f"{self.file_s:.2f} s clip: explained its loudest {window_s:g} s, "
                f"{self.start_s:.2f}-{self.start_s + window_s:.2f} s"
            )
        if self.file_s < window_s:
            return f"{self.file_s:.2f} s clip: zero-padded to {window_s:g} s"
        return ""

    def to_dict(self) -> dict:
        """The numbers behind the plot, JSON-ready (floats rounded to 6 digits)."""

        def rounded(values: np.ndarray) -> list[float]:
            return [round(float(v), 6) for v in values]

        return {
            "file": self.source,
            "predicted": self.predicted,
            "score": round(self.score, 6),
            "probabilities": dict(zip(self.labels, rounded(self.probabilities), strict=True)),
            "window": {
                "start_s": round(self.start_s, 6),
                "end_s": round(self.start_s + self.wave.size / self.sample_rate, 6),
                "file_s": round(self.file_s, 6),
                "model_s": self.window_s,
                "note": self.window_note(),
            },
            "frame_s": self.frame_s,
            "times": rounded(self.times),
            "attention": rounded(self.attention),
            "gates": [
                {"layer": g.layer, "direction": g.direction, "z": rounded(g.z), "r": rounded(g.r)}
                for g in self.gates
            ],
            **(
                {}
                if self.scores is None
                else {
                    "scores": {
                        label: rounded(self.scores[:, i]) for i, label in enumerate(self.labels)
                    }
                }
            ),
        }


def check_gru(model: KeywordModel, source: str | Path) -> None:
    """Raise ExplainError unless the model's encoder is a GRU."""
    if model.config.cell != "gru":
        raise ExplainError(
            f"{source}: gate plots need a GRU encoder; this checkpoint has cell: "
            f"{model.config.cell}"
        )


@torch.no_grad()
def explain_wave(
    model: KeywordModel, labels: list[str], wave: np.ndarray, source: str = "", start_s: float = 0.0
) -> Explanation:
    """Run a GRU model on one waveform and record its attention and gate activity.

    Args:
        model: a KeywordModel with a GRU encoder, in eval mode.
        labels: its class names.
        wave: (N,) float32 samples at the model's sample rate.
        source: name of the audio, for messages.
        start_s: where ``wave`` starts in its file (shifts the time axis).

    Returns:
        The Explanation (``file_s`` is the length of ``wave``; the caller may override it).

    Raises:
        ExplainError: an LSTM model, or explicit gates that disagree with the encoder.
    """
    check_gru(model, source)
    config = model.config.features
    batch = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]  # (1, N)
    feats, frame_lengths = model.features(batch)  # (1, T, F), (1,)
    result = model.classify(feats, frame_lengths)
    explicit = ExplicitGRU.from_gru(model.encoder).eval()
    states, _, trace = explicit(model.encoder_input(feats, frame_lengths), frame_lengths)
    difference = float((states - result["states"]).abs().max())
    if difference > ENCODER_TOLERANCE:
        raise ExplainError(f"{source}: explicit GRU differs from the encoder by {difference:.2g}")
    num_frames = feats.shape[1]
    scores = None
    if not model.bidirectional:  # each frame's window, as StreamingDetector reads it
        frame_logits = result["frame_logits"]  # (1, T, C)
        window_frames = config.num_frames(model.config.window_samples)
        past = frame_logits.new_full((1, window_frames - 1, frame_logits.shape[-1]), float("-inf"))
        scores = window_max(past, frame_logits)[0][0].softmax(-1).numpy()  # (T, C)
    centres = np.arange(num_frames) * config.hop_length + config.n_fft / 2  # samples
    gates = [
        GateTrack(
            layer=k + 1,
            direction=DIRECTIONS[d],
            z=acts.z[0].mean(-1).numpy(),  # (T,) mean over units
            r=acts.r[0].mean(-1).numpy(),
        )
        for k, directions in enumerate(trace.layers)
        for d, acts in enumerate(directions)
    ]
    return Explanation(
        source=str(source),
        labels=list(labels),
        probabilities=result["logits"][0].float().softmax(-1).numpy(),
        wave=np.asarray(wave, dtype=np.float32),
        sample_rate=config.sample_rate,
        start_s=start_s,
        file_s=wave.size / config.sample_rate,
        times=start_s + centres / config.sample_rate,
        frame_s=config.hop_length / config.sample_rate,
        features=feats[0].numpy(),
        attention=result["attention"][0].float().numpy(),
        gates=gates,
        scores=scores,
        window_s=model.config.window_s,
    )


def explain_file(checkpoint: str | Path, path: str | Path) -> Explanation:
    """Explain a checkpoint's prediction on one audio file.

    Clips longer than the model's window (``window_s``: one second for Speech Commands
    models) are cut to their loudest window, shorter ones zero-padded, as ``speech-gru
    transcribe`` does. A forward model explains the whole
    file (at least one frame), as it streams it.

    Raises:
        ModelLoadError: the checkpoint cannot be loaded.
        ExplainError: an exported model, or a model that is not a GRU.
        AudioError: the audio file cannot be read.
    """
    from speech_gru.runtime.checkpoint import load_checkpoint_model, model_kind

    source = Path(checkpoint)
    if model_kind(source) != "checkpoint":
        raise ExplainError(
            f"{source}: an exported model; explain needs the training checkpoint (.ckpt)"
        )
    model, labels, _ = load_checkpoint_model(checkpoint)
    check_gru(model, checkpoint)
    rate = model.config.features.sample_rate
    wave = load_audio(path, rate)
    if not model.bidirectional:
        whole = fit_length(wave, max(wave.size, model.config.features.n_fft))
        explanation = explain_wave(model, labels, whole, str(path))
        explanation.file_s = wave.size / rate
        return explanation
    samples = model.config.window_samples
    start = loudest_start(wave, samples)
    window = fit_length(wave[start : start + samples], samples)
    explanation = explain_wave(model, labels, window, str(path), start / rate)
    explanation.file_s = wave.size / rate
    return explanation


def write_json(result: Explanation | ClipGradients, path: str | Path) -> Path:
    """``result.to_dict()`` as JSON at ``path`` (folders made): ``--json`` of ``explain``
    and of ``explain --gradients``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    return path


def plot_explanation(explanation: Explanation, path: str | Path, dpi: int = 100) -> Path:
    """Draw waveform, MFCCs, attention and gate activity on one time axis to a PNG.

    The PNG is written to ``path`` exactly, whatever its ending (matplotlib would append
    ``.png`` to a name without one, or pick another format from another ending).

    One gate panel per GRU layer: mean z (solid) and r (dashed) over the units, forward
    (blue) and backward (orange) direction.
    """
    plt = pyplot()

    e = explanation
    layers = sorted({g.layer for g in e.gates})
    heights = [1.0, 1.3, 0.9] + [1.2] * len(layers)
    fig, axes = plt.subplots(
        len(heights), 1, sharex=True, figsize=(10, 1.6 + 1.55 * sum(heights)),
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    wave_ax, mfcc_ax, attention_ax, *gate_axes = axes

    t_wave = e.start_s + np.arange(e.wave.size) / e.sample_rate
    wave_ax.plot(t_wave, e.wave, color="0.25", linewidth=0.5)
    wave_ax.set_ylabel("waveform")
    peak = float(np.abs(e.wave).max()) or 1.0
    wave_ax.set_ylim(-1.05 * peak, 1.05 * peak)

    half = e.frame_s / 2
    extent = (e.times[0] - half, e.times[-1] + half, -0.5, e.features.shape[1] - 0.5)
    mfcc_ax.imshow(
        e.features.T, origin="lower", aspect="auto", extent=extent, cmap="magma",
        interpolation="nearest",
    )  # fmt: skip
    mfcc_ax.set_ylabel("MFCC\n(normalised)")

    if e.scores is None:
        attention_ax.fill_between(e.times, e.attention, color="tab:green", alpha=0.3, linewidth=0)
        attention_ax.plot(e.times, e.attention, color="tab:green", linewidth=1.2)
        attention_ax.set_ylabel("attention")
        attention_ax.set_ylim(0, 1.1 * float(e.attention.max()))
    else:  # a forward model: the keyword scores the stream detector reads
        for label, _, _ in e.peaks(6):
            attention_ax.plot(
                e.times, e.scores[:, e.labels.index(label)], linewidth=1.2, label=label
            )
        attention_ax.set_ylabel(f"keyword score\n({e.window_s:g} s window)")
        attention_ax.set_ylim(0, 1)
        attention_ax.grid(alpha=0.3)
        attention_ax.legend(loc="upper right", fontsize=7, ncol=6, framealpha=0.8)

    colors = {"forward": "tab:blue", "backward": "tab:orange"}
    for ax, layer in zip(gate_axes, layers, strict=True):
        for g in (g for g in e.gates if g.layer == layer):
            ax.plot(e.times, g.z, color=colors[g.direction], linewidth=1.3,
                    label=f"z update, {g.direction}")  # fmt: skip
            ax.plot(e.times, g.r, color=colors[g.direction], linewidth=1.0, linestyle="--",
                    label=f"r reset, {g.direction}")  # fmt: skip
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"GRU layer {layer}/{len(layers)}\nmean gate")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7, ncol=2, framealpha=0.8)
    axes[-1].set_xlabel("time in file (s)")
    axes[-1].set_xlim(e.start_s, e.start_s + e.wave.size / e.sample_rate)

    top = np.argsort(e.probabilities)[::-1][:3]
    others = ", ".join(f"{e.labels[i]} {e.probabilities[i]:.2f}" for i in top[1:])
    title = f"{Path(e.source).name}: predicted '{e.predicted}' (p = {e.score:.2f})"
    subtitle = "; ".join(s for s in (f"next: {others}" if others else "", e.window_note()) if s)
    if e.scores is not None:
        title = f"{Path(e.source).name}: forward GRU carrying its state over {e.file_s:.1f} s"
        subtitle = e.summary()
    fig.suptitle(f"{title}\n{subtitle}" if subtitle else title, fontsize=11)
    fig.align_ylabels(axes)
    fig.tight_layout()
    return save_figure(fig, path, dpi)
