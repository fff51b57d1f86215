"""KeywordSpotter: the LightningModule that trains a KeywordModel.

It owns the loss, metrics, optimiser, schedule and the feature-side augmentation
(SpecAugment, mixup); the layers live in ``speech_gru.model``. Hyper-parameters are plain
typed arguments saved with the checkpoint, so ``KeywordSpotter.load_from_checkpoint(path)``
alone restores a working model and its label list.
"""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import SumMetric
from torchmetrics.classification import MulticlassAccuracy

from speech_gru import __version__
from speech_gru.augment import mixup, spec_augment
from speech_gru.features import FeatureConfig
from speech_gru.labels import resolve_labels
from speech_gru.model import KeywordModel, ModelConfig

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "constant")
LR_SCALINGS = ("sqrt", "linear", "none")


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
        batch_size: clips per device per step (the recipe links it to ``data.batch_size``).
        lr_scaling: how the learning rate follows the global batch
            (``batch_size x devices x nodes x accumulate_grad_batches``): ``"sqrt"`` (the
            default, suited to AdamW), ``"linear"`` or ``"none"``.
        lr_reference_batch: global batch at which the learning rate is ``lr``.
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
        batch_size: int = 64,
        lr_scaling: str = "sqrt",
        lr_reference_batch: int = 64,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if lr_scaling not in LR_SCALINGS:
            raise ValueError(f"lr_scaling must be one of {LR_SCALINGS}, got {lr_scaling!r}")
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
        n = len(self.labels)
        # Label -1 marks padding items of a rank's last batch (speech_gru.data.PAD).
        self.train_acc = MulticlassAccuracy(n, average="micro", ignore_index=-1)
        self.val_acc = MulticlassAccuracy(n, average="micro", ignore_index=-1)
        self.test_acc = MulticlassAccuracy(n, average="micro", ignore_index=-1)
        # Clips scored per epoch, summed over ranks: each clip exactly once.
        self.train_clips, self.val_clips, self.test_clips = SumMetric(), SumMetric(), SumMetric()
        self.metrics = {
            "val": (self.val_acc, self.val_clips),
            "test": (self.test_acc, self.test_clips),
        }

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, N) waveforms -> (B, C) class probabilities."""
        return self.model(wave, lengths).softmax(-1)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy averaged over real clips: padding items (label -1) count for nothing.

        Args:
            logits: (B, C).
            target: (B,) class indices, or (B, C) soft targets (mixup).
        """
        per_clip = nn.functional.cross_entropy(
            logits,
            target.clamp(min=0) if target.ndim == 1 else target,
            label_smoothing=self.hparams.label_smoothing,
            reduction="none",
        )  # (B,)
        valid = (target >= 0) if target.ndim == 1 else target.sum(-1) > 0
        return (per_clip * valid).sum() / valid.sum().clamp(min=1)

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
        loss = self.loss(logits, soft_target)
        self.train_acc.update(logits, target)
        self.train_clips.update(target >= 0)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(target))
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        wave, target = batch
        logits = self.model(wave)
        metric, clips = self.metrics[stage]
        metric.update(logits, target)
        clips.update(target >= 0)
        loss = self.loss(logits, target)
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(target))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str, metric: MulticlassAccuracy, clips: SumMetric) -> None:
        """Log a stage's accuracy and clip count over all ranks, then start afresh.

        ``compute()`` gathers across ranks, so every rank calls it here, in the same order.
        Logging the metric objects instead would leave the gather to whichever code first
        reads the epoch's metrics, and the progress bar does that on rank 0 alone: rank 0
        then waits in a gather while the others wait at the next checkpoint's barrier.
        The logged values are equal on every rank (``sync_dist`` averages equal numbers).
        """
        accuracy, count = metric.compute(), clips.compute()
        self.log(f"{stage}/acc", accuracy, prog_bar=stage != "train", sync_dist=True)
        self.log(f"{stage}/clips", count, sync_dist=True)
        metric.reset()
        clips.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train", self.train_acc, self.train_clips)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", *self.metrics["val"])

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", *self.metrics["test"])

    def predict_step(self, batch: Tensor | tuple[Tensor, ...], batch_idx: int) -> Tensor:
        wave = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(wave)

    def scaled_lr(self) -> float:
        """The peak learning rate for this run's global batch (see ``lr_scaling``)."""
        hp = self.hparams
        trainer = self._trainer
        world = trainer.world_size * trainer.accumulate_grad_batches if trainer else 1
        ratio = hp.batch_size * world / hp.lr_reference_batch
        factor = {"sqrt": math.sqrt(ratio), "linear": ratio, "none": 1.0}[hp.lr_scaling]
        return hp.lr * factor

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's own return shapes
        hp = self.hparams
        lr = self.scaled_lr()
        if lr != hp.lr:
            log.info(
                "learning rate %.3g (lr %.3g scaled by %s for the global batch)",
                lr,
                hp.lr,
                hp.lr_scaling,
            )
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": hp.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=lr,
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
