"""Load a trained model and classify waveforms.

``load_classifier`` takes a Lightning checkpoint; it returns a ``Classifier`` that maps
batches of 16 kHz waveforms to class probabilities, whatever their lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn


class ModelLoadError(Exception):
    """A model file could not be loaded; ``str()`` is one line naming the file."""


@dataclass
class Classifier:
    """A model ready for inference.

    Attributes:
        model: maps ((B, N) waveforms, (B,) lengths) to (B, C) logits.
        labels: class names, in output order.
        source: the file it was loaded from.
        metadata: what the file records besides weights (hyper-parameters, test metrics).
    """

    model: nn.Module
    labels: list[str]
    source: Path
    metadata: dict

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def predict(self, waves: Tensor | Sequence[np.ndarray], batch_size: int = 64) -> Tensor:
        """Class probabilities of each waveform.

        Args:
            waves: a (B, N) tensor, or a list of 1-D arrays of any lengths (padded here).
            batch_size: waveforms per forward pass.

        Returns:
            (B, C) probabilities on the CPU.
        """
        if isinstance(waves, Tensor):
            waves = list(waves)
        out = []
        for start in range(0, len(waves), batch_size):
            chunk = [
                torch.as_tensor(w, dtype=torch.float32) for w in waves[start : start + batch_size]
            ]
            lengths = torch.tensor([w.numel() for w in chunk])
            batch = nn.utils.rnn.pad_sequence(chunk, batch_first=True).to(self.device)
            same = bool((lengths == lengths[0]).all())
            logits = self.model(batch, None if same else lengths.to(self.device))
            out.append(logits.float().softmax(-1).cpu())
        num_classes = len(self.labels)
        return torch.cat(out) if out else torch.empty(0, num_classes)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Load a checkpoint written by the training recipe.

    Raises:
        ModelLoadError: missing file, or a file that is not a speech_gru checkpoint.
    """
    from speech_gru.lit import KeywordSpotter

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ModelLoadError(
            f"{path}: not a checkpoint file (torch.load failed: {type(err).__name__})"
        ) from None
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint:
        raise ModelLoadError(f"{path}: not a speech_gru checkpoint (no hyper-parameters)")
    try:
        module = KeywordSpotter.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a mismatched checkpoint fails in many ways
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(f"{path}: not a speech_gru checkpoint ({reason})") from None
    model = module.model.eval().to(device)
    metadata = {
        "hyper_parameters": dict(checkpoint["hyper_parameters"]),
        "test_metrics": checkpoint.get("test_metrics", {}),
        "epoch": checkpoint.get("epoch"),
        "version": checkpoint.get("speech_gru_version"),
    }
    return Classifier(model, list(module.labels), path, metadata)
