"""How much of the error signal reaches each frame: the vanishing gradient made visible.

A recurrent layer learns from frame ``t`` only through the gradient that flows back to it
from the loss. In a plain RNN that gradient is multiplied at every step by the recurrent
weights and the tanh's slope, so it tends to fade (or explode) as it goes back in time;
the GRU's update gate and the LSTM's cell state give it a path that can carry it through
unchanged. ``input_gradient_norms`` measures it: the norm of the gradient of the
cross-entropy loss with respect to the encoder's input (the normalised MFCCs) at each
frame, one clip at a time (summed over the batch, so each clip's gradient is its own).
Padded frames get none.

``gradient_flow`` averages it over clips; ``plot_gradients`` (``speech-gru explain
--gradients``) draws it for one clip, and ``plot_flow``
(``recipes/speech_commands/experiments/gradient_flow.py``) the curves of several checkpoints
on one axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from speech_gru.core.model import KeywordModel, frame_mask
from speech_gru.core.plots import pyplot, save_figure


def input_gradient_norms(
    model: KeywordModel, wave: Tensor, target: Tensor, lengths: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Per-frame norm of the loss gradient with respect to the encoder's input.

    Args:
        model: any KeywordModel (eval mode: no dropout, fixed feature statistics).
        wave: (B, N) waveforms.
        target: (B,) class index each clip's loss is taken against.
        lengths: (B,) valid samples per clip; None means all N.

    Returns:
        (B, T) ``||d loss / d x_t||`` (zero on padded frames) and (B,) frame lengths.
    """
    with torch.no_grad():
        feats, frame_lengths = model.features(wave, lengths)  # (B, T, F)
    grad = feature_gradients(model, feats, frame_lengths, target)
    mask = frame_mask(frame_lengths, feats.shape[1])
    return grad.norm(dim=-1) * mask, frame_lengths


def feature_loss(
    model: KeywordModel, feats: Tensor, frame_lengths: Tensor, target: Tensor
) -> Tensor:
    """The summed cross-entropy of the model's logits on (B, T, F) encoder inputs."""
    logits = model.classify(feats, frame_lengths)["logits"]
    return nn.functional.cross_entropy(logits, target, reduction="sum")


def feature_gradients(
    model: KeywordModel, feats: Tensor, frame_lengths: Tensor, target: Tensor
) -> Tensor:
    """(B, T, F) gradient of ``feature_loss`` with respect to ``feats``."""
    with torch.enable_grad():
        feats = feats.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(feature_loss(model, feats, frame_lengths, target), feats)
    return grad


@dataclass
class ClipGradients:
    """The gradient of one clip's loss, frame by frame.

    Attributes:
        source: the audio's name.
        label: the class the loss is taken against (the model's prediction).
        score: the model's probability of it.
        wave: (N,) the samples.
        times: (T,) centre of each frame, in seconds.
        norms: (T,) ``||d loss / d x_t||``.
        cell: the model's recurrent cell.
    """

    source: str
    label: str
    score: float
    wave: np.ndarray
    times: np.ndarray
    norms: np.ndarray
    cell: str

    def to_dict(self) -> dict:
        return {
            "file": self.source,
            "cell": self.cell,
            "label": self.label,
            "score": round(self.score, 6),
            "times": [round(float(t), 6) for t in self.times],
            "gradient_norms": [float(f"{v:.6g}") for v in self.norms],
        }


def clip_gradients(
    model: KeywordModel, labels: Sequence[str], wave: np.ndarray, source: str = ""
) -> ClipGradients:
    """``input_gradient_norms`` of one clip, against the model's own prediction."""
    batch = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]  # (1, N)
    with torch.no_grad():
        probs = model(batch).float().softmax(-1)[0]
    predicted = int(probs.argmax())
    norms, _ = input_gradient_norms(model, batch, torch.tensor([predicted]))
    f = model.config.features
    centres = np.arange(norms.shape[1]) * f.hop_length + f.n_fft / 2
    return ClipGradients(
        source=str(source),
        label=labels[predicted],
        score=float(probs[predicted]),
        wave=np.asarray(wave, dtype=np.float32),
        times=centres / f.sample_rate,
        norms=norms[0].numpy(),
        cell=model.config.cell,
    )


def gradients_file(checkpoint: str | Path, path: str | Path) -> ClipGradients:
    """``clip_gradients`` of a checkpoint's model on an audio file's loudest window of the
    model's length (as ``explain`` and ``transcribe`` take a clip).

    Raises:
        ModelLoadError: the checkpoint cannot be loaded (or is an export: gradients need
            the weights in PyTorch).
        AudioError: the audio file cannot be read.
    """
    from speech_gru.core.audio import load_audio, loudest_window
    from speech_gru.runtime.checkpoint import ModelLoadError, load_checkpoint_model, model_kind

    if model_kind(checkpoint) != "checkpoint":
        raise ModelLoadError(
            f"{checkpoint}: an exported model; gradients need the training checkpoint (.ckpt)"
        )
    model, labels, _ = load_checkpoint_model(checkpoint)
    wave = loudest_window(load_audio(path), model.config.window_samples)
    return clip_gradients(model, labels, wave, str(path))


def gradient_flow(
    model: KeywordModel, waves: np.ndarray, targets: Sequence[int], batch_size: int = 64
) -> np.ndarray:
    """(T,) mean over clips of ``input_gradient_norms``, against their true labels.

    Args:
        waves: (B, N) clips of one length.
        targets: (B,) their class indices.
    """
    total = None
    for start in range(0, len(waves), batch_size):
        batch = torch.from_numpy(np.asarray(waves[start : start + batch_size], np.float32))
        target = torch.as_tensor(targets[start : start + batch_size])
        norms, _ = input_gradient_norms(model, batch, target)
        total = norms.sum(0) if total is None else total + norms.sum(0)
    return (total / len(waves)).numpy()


def plot_gradients(gradients: ClipGradients, path: str | Path) -> Path:
    """The waveform and, under it on the same time axis, the gradient norm per frame
    (log scale), to a PNG at exactly ``path``."""
    plt = pyplot()

    g = gradients
    fig, (wave_ax, grad_ax) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 5), gridspec_kw={"height_ratios": [1, 1.4]}
    )
    wave_ax.plot(np.arange(g.wave.size) / 16000, g.wave, color="0.25", linewidth=0.5)
    wave_ax.set_ylabel("waveform")
    grad_ax.semilogy(g.times, np.maximum(g.norms, 1e-12), color="tab:red", linewidth=1.3)
    grad_ax.set_ylabel("||dL/dx_t||\n(log scale)")
    grad_ax.set_xlabel("time (s)")
    grad_ax.grid(alpha=0.3, which="both")
    fig.suptitle(
        f"{Path(g.source).name}: how much of the loss's gradient reaches each frame "
        f"({g.cell.upper()}; loss against '{g.label}', p = {g.score:.2f})",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_flow(
    panels: Sequence[tuple[str, dict[str, np.ndarray]]], path: str | Path, frame_s: float
) -> Path:
    """Curves of mean gradient norm per frame, one panel per set of clips, one curve per
    model (name -> (T,) curve), log scale, to a PNG."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    colors = {"gru": "tab:blue", "lstm": "tab:orange", "rnn": "tab:red"}
    for ax, (title, curves) in zip(axes[0], panels, strict=True):
        for name, curve in curves.items():
            t = np.arange(len(curve)) * frame_s
            color = colors.get(name.split()[0].lower())
            ax.semilogy(t, np.maximum(curve, 1e-12), label=name, color=color, linewidth=1.5)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("frame start (s)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("mean ||dL/dx_t|| (log scale)")
    fig.tight_layout()
    return save_figure(fig, path)
