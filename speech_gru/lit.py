"""KeywordSpotter: the LightningModule that trains a KeywordModel.

It owns the loss, metrics, optimiser, schedule and the feature-side augmentation
(SpecAugment, mixup); the layers live in ``speech_gru.model``. Hyper-parameters are plain
typed arguments saved with the checkpoint, so ``KeywordSpotter.load_from_checkpoint(path)``
alone restores a working model and its label list.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from speech_gru import __version__
from speech_gru.augment import mixup, spec_augment
from speech_gru.features import FeatureConfig
from speech_gru.labels import resolve_labels
from speech_gru.model import KeywordModel, ModelConfig

SCHEDULES = ("cosine", "constant")


class KeywordSpotter(L.LightningModule):
    """Keyword classifier over raw 16 kHz waveforms.

    Args:
        labels: label-set name (``"v2_12"``, ``"v2_35"``, ...) or the list of labels.
        cell: ``"gru"`` or ``"lstm"``.
        hidden_size: recurrent units per direction.
        num_layers: stacked bidirectional layers.
        dropout: dropout between recurrent layers and before the head.
        attention_dim: width of the attention scorer.
        feature_norm: ``"utterance"``, ``"global"`` or ``"none"``.
        n_mfcc: cepstral coefficients.
        n_mels: mel bands.
        n_fft: window length in samples.
        hop_length: frame step in samples.
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz.
        time_masks: SpecAugment time masks per clip (0 turns them off).
        time_mask_width: widest time mask in frames.
        freq_masks: SpecAugment frequency masks per clip.
        freq_mask_width: widest frequency mask in coefficients.
        mixup_alpha: Beta(alpha, alpha) mixup of features and targets; 0 turns it off.
        label_smoothing: cross-entropy label smoothing.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay (not applied to biases and norms).
        warmup_epochs: linear warm-up length, in epochs (fractions allowed).
        schedule: ``"cosine"`` decay to ``min_lr_ratio * lr`` after warm-up, or ``"constant"``.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
    """

    def __init__(
        self,
        labels: list[str] | str = "v2_12",
        cell: str = "gru",
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.1,
        attention_dim: int = 64,
        feature_norm: str = "utterance",
        n_mfcc: int = 40,
        n_mels: int = 40,
        n_fft: int = 480,
        hop_length: int = 160,
        f_min: float = 20.0,
        f_max: float = 7600.0,
        time_masks: int = 2,
        time_mask_width: int = 10,
        freq_masks: int = 2,
        freq_mask_width: int = 5,
        mixup_alpha: float = 0.0,
        label_smoothing: float = 0.1,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        warmup_epochs: float = 1.0,
        schedule: str = "cosine",
        min_lr_ratio: float = 0.01,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.labels = resolve_labels(labels)
        self.save_hyperparameters()
        self.hparams["labels"] = self.labels  # always the resolved list
        features = FeatureConfig(
            n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, n_mfcc=n_mfcc,
            f_min=f_min, f_max=f_max,
        )  # fmt: skip
        self.model = KeywordModel(
            ModelConfig(
                num_classes=len(self.labels), cell=cell, hidden_size=hidden_size,
                num_layers=num_layers, dropout=dropout, attention_dim=attention_dim,
                feature_norm=feature_norm, features=features,
            )
        )  # fmt: skip
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        n = len(self.labels)
        self.train_acc = MulticlassAccuracy(n, average="micro")
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.test_acc = MulticlassAccuracy(n, average="micro")

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, N) waveforms -> (B, C) class probabilities."""
        return self.model(wave, lengths).softmax(-1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        wave, target = batch
        hp = self.hparams
        feats, frame_lengths = self.model.features(wave)
        feats = spec_augment(
            feats, frame_lengths, hp.time_masks, hp.time_mask_width,
            hp.freq_masks, hp.freq_mask_width,
        )  # fmt: skip
        soft_target: Tensor = target
        if hp.mixup_alpha > 0:
            feats, soft_target, _ = mixup(feats, target, len(self.labels), hp.mixup_alpha)
        logits = self.model.classify(feats, frame_lengths)["logits"]
        loss = self.criterion(logits, soft_target)
        self.train_acc(logits, target)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(target))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(target))
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        wave, target = batch
        logits = self.model(wave)
        metric = self.val_acc if stage == "val" else self.test_acc
        metric(logits, target)
        kwargs = {"batch_size": len(target), "sync_dist": True}
        self.log(f"{stage}/loss", self.criterion(logits, target), **kwargs)
        self.log(f"{stage}/acc", metric, prog_bar=True, batch_size=len(target))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Tensor | tuple[Tensor, ...], batch_idx: int) -> Tensor:
        wave = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(wave)

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's own return shapes
        hp = self.hparams
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": hp.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=hp.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = min(total, int(round(hp.warmup_epochs * total / epochs)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, warmup, total, hp.schedule, hp.min_lr_ratio)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["speech_gru_version"] = __version__


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then the schedule."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
