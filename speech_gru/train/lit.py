"""KeywordSpotter: the LightningModule that trains a KeywordModel.

It owns the loss, metrics, optimiser, schedule and the feature-side augmentation
(SpecAugment, mixup); the layers live in ``speech_gru.core.model``. The model's settings are the
dataclasses ``ArchitectureConfig`` and ``FeatureConfig``, each defined and documented once
there; the training settings are this class's own arguments. All are saved with the
checkpoint as plain data, so ``KeywordSpotter.load_from_checkpoint(path)`` alone restores
a working model and its label list.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import SumMetric
from torchmetrics.classification import MulticlassAccuracy

from speech_gru import __version__
from speech_gru.core.features import FeatureConfig
from speech_gru.core.labels import resolve_labels
from speech_gru.core.model import (
    DEFAULT_WINDOW_S,
    ArchitectureConfig,
    KeywordModel,
    ModelConfig,
)
from speech_gru.runtime.checkpoint import (
    VERSION,
    CheckpointError,
    ModelLoadError,
    checkpoint_model,
    model_state,
    read_checkpoint,
    stored_hyper_parameters,
)
from speech_gru.train.augment import mixup, spec_augment

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "constant")
LR_SCALINGS = ("sqrt", "linear", "none")
DEFAULT_ARCHITECTURE = ArchitectureConfig()  # frozen: safe to share as a default
DEFAULT_FEATURES = FeatureConfig()

Config = TypeVar("Config", ArchitectureConfig, FeatureConfig)


def as_config(kind: type[Config], value: Config | dict) -> Config:
    """A config dataclass, from itself or from the dict a checkpoint stores."""
    return value if isinstance(value, kind) else kind(**value)


class KeywordSpotter(L.LightningModule):
    """Keyword classifier over raw 16 kHz waveforms.

    Args:
        labels: label-set name (``"v2_12"``, ``"v2_35"``, ...) or the list of labels.
        architecture: the encoder, pooling and head (see ``ArchitectureConfig``); a dict of
            its fields is taken too (as checkpoints store it).
        features: the MFCC frontend (see ``FeatureConfig``); a dict of its fields is taken too.
        window_s: seconds per clip and per scored window, 0.5 to 3 (see
            ``ModelConfig.window_s``); the recipe links it to the data, which cuts or pads
            every clip to it.
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
        init_from: a trained checkpoint to start from: its features and encoder (the GRU
            and the attention pooling) are loaded, the head is new, sized for ``labels``.
            The recipe also takes the checkpoint's architecture and features settings, so
            the two match; ``window_s`` stays this run's (the encoder does not depend on
            it). Loaded when a fit starts; a resumed fit keeps its own weights.
        freeze_encoder_epochs: with ``init_from``, train only the head for this many first
            epochs, then everything.
        distill_from: teacher checkpoints (an ensemble, say): the student also learns
            their averaged class probabilities at ``distill_temperature``, each teacher
            fed the student's own augmented (and mixed) features, so teacher and student
            see the same view of every clip. Teachers need the student's labels and
            features settings (MFCC and ``feature_norm``, not ``global``); any size or
            cell. Loaded when a fit starts, never saved with the student.
        distill_weight: the share of the loss that follows the teachers; the labels'
            cross-entropy has the rest.
        distill_temperature: softmax temperature of teachers and student in the
            distillation term (scaled by its square, so its gradients keep their size).
    """

    def __init__(
        self,
        labels: list[str] | str = "v2_12",
        architecture: ArchitectureConfig = DEFAULT_ARCHITECTURE,
        features: FeatureConfig = DEFAULT_FEATURES,
        window_s: float = DEFAULT_WINDOW_S,
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
        init_from: str | None = None,
        freeze_encoder_epochs: int = 0,
        distill_from: list[str] | None = None,
        distill_weight: float = 0.5,
        distill_temperature: float = 2.0,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if lr_scaling not in LR_SCALINGS:
            raise ValueError(f"lr_scaling must be one of {LR_SCALINGS}, got {lr_scaling!r}")
        if freeze_encoder_epochs < 0 or (freeze_encoder_epochs and not init_from):
            raise ValueError("freeze_encoder_epochs needs init_from and must be >= 0")
        if not 0.0 <= distill_weight <= 1.0 or distill_temperature <= 0:
            raise ValueError("distill_weight must be within [0, 1], distill_temperature > 0")
        self.labels = resolve_labels(labels)
        config = ModelConfig.build(
            len(self.labels),
            as_config(ArchitectureConfig, architecture),
            as_config(FeatureConfig, features),
            window_s,
        )
        # Plain dicts in the checkpoint, which is then read weights-only.
        architecture, features = config.architecture.to_dict(), asdict(config.features)
        self.save_hyperparameters()
        self.hparams.update(
            labels=self.labels,
            architecture=architecture,
            features=features,
            window_s=config.window_s,
        )
        self.model = KeywordModel(config)
        n = len(self.labels)
        # Label -1 marks padding items of a rank's last batch (speech_gru.train.data.PAD).
        self.train_acc = MulticlassAccuracy(n, average="micro", ignore_index=-1)
        self.val_acc = MulticlassAccuracy(n, average="micro", ignore_index=-1)
        self.test_acc = MulticlassAccuracy(n, average="micro", ignore_index=-1)
        # Clips scored per epoch, summed over ranks: each clip exactly once.
        self.train_clips, self.val_clips, self.test_clips = SumMetric(), SumMetric(), SumMetric()
        self.metrics = {
            "val": (self.val_acc, self.val_clips),
            "test": (self.test_acc, self.test_clips),
        }
        # Teachers in a plain list: not sub-modules, so never in the state dict or the
        # optimizer, and DDP leaves them alone.
        self.teachers: list[KeywordModel] = []

    def setup(self, stage: str) -> None:
        # Before Lightning restores a resumed fit's checkpoint, which then replaces these.
        if stage == "fit" and self.hparams.init_from:
            self.load_encoder(self.hparams.init_from)
        if stage == "fit" and self.hparams.distill_from:
            self.teachers = [self.load_teacher(path) for path in self.hparams.distill_from]
            rank_zero_info(
                f"model.distill_from: {len(self.teachers)} teacher(s), weight "
                f"{self.hparams.distill_weight:g} at temperature "
                f"{self.hparams.distill_temperature:g}"
            )

    def load_teacher(self, path: str | os.PathLike) -> KeywordModel:
        """The frozen KeywordModel of the checkpoint ``path`` (eval mode, no gradients).

        Raises:
            CheckpointError: the file is missing or unreadable, or its labels or features
                settings differ from this model's; one line.
        """
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: checkpoint file not found (model.distill_from)")
        try:
            teacher, labels = checkpoint_model(path, read_checkpoint(path))
        except ModelLoadError as err:
            raise CheckpointError(f"{err} (model.distill_from)") from None
        own, its = self.model.config, teacher.config
        problem = (
            f"its labels {labels} are not this model's {self.labels}"
            if labels != self.labels
            else "its model.features differ from this model's"
            if its.features != own.features
            else f"its feature_norm is {its.feature_norm!r}, this model's {own.feature_norm!r}"
            if its.feature_norm != own.feature_norm or own.feature_norm == "global"
            else ""
        )
        if problem:
            raise CheckpointError(f"{path}: cannot teach this model: {problem}")
        for param in teacher.parameters():
            param.requires_grad_(False)
        return teacher.eval()

    def on_fit_start(self) -> None:
        for teacher in self.teachers:
            teacher.to(self.device)

    def distill_loss(
        self, logits: Tensor, feats: Tensor, frame_lengths: Tensor, valid: Tensor
    ) -> Tensor:
        """Temperature-scaled KL divergence from the teachers' averaged probabilities on
        these features to the student's ``logits``, averaged over ``valid`` clips."""
        temperature = self.hparams.distill_temperature
        with torch.no_grad():
            target = torch.stack(
                [
                    (t.classify(feats, frame_lengths)["logits"] / temperature).softmax(-1)
                    for t in self.teachers
                ]
            ).mean(0)  # (B, C)
        log_student = (logits / temperature).log_softmax(-1)
        per_clip = (target * (target.clamp(min=1e-12).log() - log_student)).sum(-1)  # (B,)
        return temperature**2 * (per_clip * valid).sum() / valid.sum().clamp(min=1)

    def load_encoder(self, path: str | os.PathLike) -> None:
        """Load the features and encoder of the checkpoint ``path``; the head stays new.

        Raises:
            CheckpointError: the file is missing or unreadable, or its encoder's shapes
                differ from this model's; one line.
        """
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: checkpoint file not found (model.init_from)")
        state = model_state(read_checkpoint(path), path)
        shared = {key: value for key, value in state.items() if not key.startswith("head.")}
        own = {k: v for k, v in self.model.state_dict().items() if not k.startswith("head.")}
        differ = sorted(
            key for key in own if key not in shared or shared[key].shape != own[key].shape
        )
        if differ:
            raise CheckpointError(
                f"{path}: its encoder does not fit this model ({differ[0]} differs); "
                "train with the checkpoint's model.architecture and model.features"
            )
        self.model.load_state_dict(shared, strict=False)  # all but the head, checked above
        frozen = self.hparams.freeze_encoder_epochs
        rank_zero_info(
            f"model.init_from: features and encoder loaded from {path}, new head"
            + (f"; encoder frozen for the first {frozen} epochs" if frozen else "")
        )

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Everything but the head: what ``freeze_encoder_epochs`` holds still."""
        return [p for name, p in self.model.named_parameters() if not name.startswith("head.")]

    def on_after_backward(self) -> None:
        # Dropping the gradients (rather than requires_grad) keeps DDP's buckets unchanged;
        # AdamW skips parameters without a gradient, weight decay included.
        if self.current_epoch < self.hparams.freeze_encoder_epochs:
            for param in self.encoder_parameters():
                param.grad = None

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
        if self.teachers:
            weight = hp.distill_weight
            valid = (target >= 0).to(logits.dtype)
            distill = self.distill_loss(logits, feats, frame_lengths, valid)
            self.log("train/distill", distill, batch_size=len(target))
            loss = (1 - weight) * loss + weight * distill
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
        checkpoint[VERSION] = __version__


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then the schedule."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def init_checkpoint_config(path: str | os.PathLike) -> dict[str, dict]:
    """The ``architecture`` and ``features`` a model needs to load ``path``'s encoder
    (``KeywordSpotter.init_from``).

    Raises:
        CheckpointError: the file will not be read, or its settings are of the flat form.
    """
    stored = stored_hyper_parameters(path, read_checkpoint(path))
    return {key: stored[key] for key in ("architecture", "features") if key in stored}
