"""KeywordModel: MFCC frontend -> (optional convolutional stem) -> bidirectional GRU (or
LSTM, or plain RNN) -> attention pooling -> head, or, for a model that streams, forward
GRU (or LSTM, or RNN) -> per-frame head -> max over frames.

A plain ``nn.Module`` with no Lightning import: waveforms in, logits out. Padded batches
carry ``lengths`` (valid samples per clip); every stage masks the padding, so a clip's
result does not depend on what it was batched with. A forward model also streams:
``step`` takes audio in chunks of any size and carries its state (``StreamState``).
A model is trained on clips of ``ModelConfig.window_s`` seconds (1 s by default) and
scores windows of that length.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from speech_gru.core.features import MFCC, FeatureConfig

CELLS = ("gru", "lstm", "rnn")
RECURRENT = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}
"""The PyTorch module of each cell; ``rnn`` is the plain (Elman) tanh RNN, no gates."""
NORMS = ("utterance", "global", "none")
DIRECTIONS = ("bidirectional", "forward")
STREAMABLE_NORMS = ("global", "none")
DEFAULT_WINDOW_S = 1.0
"""The clip and window length of a model that does not say (every checkpoint from before
``window_s`` was stored): Speech Commands' one-second clips."""
WINDOW_RANGE_S = (0.5, 3.0)
"""The shortest and longest ``window_s``: from a short command to a long wake phrase."""


def check_window_s(value: object, name: str = "window_s") -> float:
    """``value`` as a window length in seconds, within ``WINDOW_RANGE_S``.

    Raises:
        ValueError: one line naming ``name``: not a number, or outside the range.
    """
    low, high = WINDOW_RANGE_S
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(
            f"{name} must be a number of seconds from {low:g} to {high:g} (the length of "
            f"the clips the model is trained on and of the windows it scores), got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class ArchitectureConfig:
    """What a KeywordModel is made of, apart from its outputs and its MFCC settings: the
    ``model.architecture`` section of a recipe config.

    Attributes:
        cell: recurrent cell, ``"gru"`` (the default), or to compare ``"lstm"`` or
            ``"rnn"`` (a plain tanh RNN: ``h_t = tanh(W x_t + U h_{t-1} + b)``, no gates).
        hidden_size: units per direction.
        num_layers: stacked bidirectional layers.
        dropout: dropout between recurrent layers and before the head.
        attention_dim: width of the attention scorer.
        feature_norm: ``"utterance"`` (each clip's own mean and variance per coefficient),
            ``"global"`` (running statistics learned in training) or ``"none"``.
        direction: ``"bidirectional"`` (the default: attention pooling over the whole
            clip) or ``"forward"``, a unidirectional encoder with a head on every frame
            that streams with carried state (see ``KeywordModel``); it needs
            ``feature_norm`` ``"global"`` or ``"none"``, as a clip's own statistics see
            the future. ``attention_dim`` is unused then.
        conv_stem: channels of a convolutional stem between the features and the
            recurrent encoder: two 1-D convolutions over time (kernel ``conv_kernel``,
            ReLU after each), so the GRU reads learned local patterns of
            ``2 * conv_kernel - 1`` frames instead of single MFCC frames; 0 (the
            default) for none. Bidirectional models only (its centred kernels see
            frames ahead, which a forward model's stream does not have yet).
        conv_kernel: frames per convolution of the stem, odd.
    """

    cell: str = "gru"
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.1
    attention_dim: int = 64
    feature_norm: str = "utterance"
    direction: str = "bidirectional"
    conv_stem: int = 0
    conv_kernel: int = 5

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.feature_norm not in NORMS:
            raise ValueError(f"feature_norm must be one of {NORMS}, got {self.feature_norm!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.direction == "forward" and self.feature_norm not in STREAMABLE_NORMS:
            raise ValueError(
                f"direction 'forward' needs feature_norm one of {STREAMABLE_NORMS} "
                f"(per-utterance statistics see the future), got {self.feature_norm!r}"
            )
        if self.conv_stem < 0 or self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(
                f"conv_stem must be >= 0 and conv_kernel odd, got {self.conv_stem} and "
                f"{self.conv_kernel}"
            )
        if self.conv_stem and self.direction == "forward":
            raise ValueError(
                "conv_stem needs direction 'bidirectional' (its centred kernels see frames "
                "ahead, which a forward model's stream does not have yet)"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ArchitectureConfig):
    """Everything a KeywordModel is built from: its architecture (the fields of
    ``ArchitectureConfig``), the number of outputs, the MFCC settings and the window.

    Attributes:
        num_classes: output labels (from the label set, never configured by hand).
        features: MFCC settings.
        window_s: seconds of audio the model is trained on (every clip is cut or padded
            to it) and scores at a time (the detector's window, the input of an export):
            1 s for Speech Commands, up to 3 s for a long wake phrase; within
            ``WINDOW_RANGE_S``. The encoder's weights do not depend on it, so a model's
            encoder can start another of a different window (``--model.init_from``).
    """

    num_classes: int
    features: FeatureConfig = field(default_factory=FeatureConfig)
    window_s: float = DEFAULT_WINDOW_S

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "window_s", check_window_s(self.window_s))

    @property
    def window_samples(self) -> int:
        """``window_s`` in samples at the features' rate (16000 for 1 s)."""
        return round(self.window_s * self.features.sample_rate)

    @classmethod
    def build(
        cls,
        num_classes: int,
        architecture: ArchitectureConfig,
        features: FeatureConfig,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> ModelConfig:
        return cls(
            num_classes=num_classes,
            features=features,
            window_s=window_s,
            **architecture_fields(architecture),
        )

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any], num_classes: int) -> ModelConfig:
        """The config that stored hyper-parameters describe: a checkpoint's
        ``hyper_parameters`` or an export's metadata, with the model's settings under
        ``architecture`` and ``features`` and its ``window_s`` (``DEFAULT_WINDOW_S`` when
        absent, as in checkpoints written before it was stored); entries that are not
        about the model are ignored.

        Raises:
            TypeError, ValueError: entries that do not make a model, or settings of the
                flat form (see ``check_nested``).
        """
        cls.check_nested(hparams)
        return cls.build(
            num_classes,
            ArchitectureConfig(**(hparams.get("architecture") or {})),
            FeatureConfig(**(hparams.get("features") or {})),
            stored_window_s(hparams),
        )

    @staticmethod
    def check_nested(section: Mapping[str, Any]) -> None:
        """Refuse model settings written flat (``hidden_size``, ``n_fft``, ... beside ``lr``
        in a checkpoint's hyper-parameters), the form from before they moved under
        ``architecture`` and ``features``: it is no longer read, and ignoring it would
        build a different model without a word.

        Raises:
            ValueError: one line naming the flat settings.
        """
        flat = [key for key in section if key in ARCHITECTURE_KEYS + FEATURE_KEYS]
        if flat:
            where = "architecture" if flat[0] in ARCHITECTURE_KEYS else "features"
            raise ValueError(
                f"model settings of the old flat form ({', '.join(flat)}) are no longer "
                f"read; they belong under architecture and features (e.g. model.{where}."
                f"{flat[0]} in a recipe config)"
            )

    @property
    def architecture(self) -> ArchitectureConfig:
        return ArchitectureConfig(**architecture_fields(self))


def stored_window_s(hparams: Mapping[str, Any]) -> float:
    """The ``window_s`` of stored hyper-parameters: ``DEFAULT_WINDOW_S`` when absent (or
    None).

    Raises:
        ValueError: a value outside ``WINDOW_RANGE_S`` (``check_window_s``).
    """
    value = hparams.get("window_s")
    return DEFAULT_WINDOW_S if value is None else check_window_s(value)


ARCHITECTURE_KEYS = tuple(f.name for f in fields(ArchitectureConfig))
FEATURE_KEYS = tuple(f.name for f in fields(FeatureConfig))


def architecture_fields(config: ArchitectureConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in ARCHITECTURE_KEYS}


def frame_mask(frame_lengths: Tensor, num_frames: int) -> Tensor:
    """(B,) lengths -> (B, T) boolean mask, True on valid frames."""
    return torch.arange(num_frames, device=frame_lengths.device) < frame_lengths[:, None]


class FeatureNorm(nn.Module):
    """Mean and variance normalisation of (B, T, F) features over valid frames."""

    def __init__(self, num_features: int, mode: str = "utterance", momentum: float = 0.01):
        super().__init__()
        self.mode = mode
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self, feats: Tensor, mask: Tensor) -> Tensor:
        if self.mode == "none":
            return feats
        weight = mask.unsqueeze(-1).to(feats.dtype)  # (B, T, 1)
        if self.mode == "utterance":
            count = weight.sum(1, keepdim=True).clamp(min=1.0)  # (B, 1, 1)
            mean = (feats * weight).sum(1, keepdim=True) / count
            var = ((feats - mean).square() * weight).sum(1, keepdim=True) / count
            return (feats - mean) * torch.rsqrt(var + 1e-5) * weight
        if self.training:
            with torch.no_grad():
                count = weight.sum().clamp(min=1.0)
                mean = (feats * weight).sum((0, 1)) / count
                var = ((feats - mean).square() * weight).sum((0, 1)) / count
                if not bool(self.initialized):
                    self.running_mean.copy_(mean)
                    self.running_var.copy_(var)
                    self.initialized.fill_(True)
                else:
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_var.lerp_(var, self.momentum)
        return (feats - self.running_mean) * torch.rsqrt(self.running_var + 1e-5) * weight


class AttentionPool(nn.Module):
    """Softmax attention over valid frames: (B, T, D) -> (B, D) and (B, T) weights."""

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        # No bias on the last layer: softmax ignores a constant shift, so it would get no
        # gradient (only float noise, which Adam would amplify).
        self.score = nn.Sequential(
            nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1, bias=False)
        )

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.score(h).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(~mask, float("-inf"))  # every clip has a valid frame
        wide = torch.promote_types(scores.dtype, torch.float32)  # at least float32
        weights = torch.softmax(scores, dim=-1, dtype=wide).to(h.dtype)  # (B, T)
        return torch.bmm(weights.unsqueeze(1), h).squeeze(1), weights


class ConvStem(nn.Module):
    """Two 1-D convolutions over time with ReLUs: (B, T, F) features -> (B, T, C), same
    length. Padded frames are zeroed after each layer, so a clip's output is the same
    alone (the convolutions' zero padding) as in a padded batch.

    Args:
        num_features: F, the MFCC coefficients.
        channels: C, the output width (the recurrent encoder's input).
        kernel: frames per convolution, odd.
    """

    def __init__(self, num_features: int, channels: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.first = nn.Conv1d(num_features, channels, kernel, padding=pad)
        self.second = nn.Conv1d(channels, channels, kernel, padding=pad)

    def forward(self, feats: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, T, F) features and an optional (B, T) valid-frame mask -> (B, T, C)."""
        x = feats.transpose(1, 2)  # (B, F, T)
        x = torch.relu(self.first(x))
        if mask is not None:
            x = x * mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        x = torch.relu(self.second(x))
        if mask is not None:
            x = x * mask.unsqueeze(1).to(x.dtype)
        return x.transpose(1, 2)


class StreamState(NamedTuple):
    """What a forward KeywordModel carries from one ``step`` to the next: a tuple of
    tensors, so an export can make each an input and an output.

    Attributes:
        samples: (B, L) audio not yet framed, from the start of the next frame on
            (``L < n_fft`` after every step): the feature ring buffer.
        h: (num_layers, B, H) hidden state of the recurrent encoder.
        c: (num_layers, B, H) cell state of an LSTM encoder; None for a GRU or an RNN.
    """

    samples: Tensor
    h: Tensor
    c: Tensor | None = None


def window_max(past: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    """Each new frame's clip logits over the window of frames ending at it: the per-class
    maximum, as a forward model's ``classify`` takes it over a clip.

    Args:
        past: (B, T - 1, C) logits of the frames before the new ones (the window is T
            frames; ``-inf`` where the stream had no frame yet).
        logits: (B, k, C) logits of k new frames.

    Returns:
        (B, k, C) window maxima, and the (B, T - 1, C) past for the next call.
    """
    if logits.shape[1] == 0:
        return logits, past
    both = torch.cat([past, logits], dim=1)  # (B, T - 1 + k, C)
    width = past.shape[1] + 1
    return both.unfold(1, width, 1).amax(-1), both[:, both.shape[1] - (width - 1) :]


class KeywordModel(nn.Module):
    """Waveforms in, keyword logits out.

    A bidirectional model (the default) pools its encoder states over the clip with
    attention and applies the head once. A forward model (``direction: forward``) applies
    the head to every frame's state, ``frame_logits[t] = head(h_t)``, and a clip's logits
    are the per-class maximum of the frame logits over its valid frames: the max-pooling
    objective of streaming keyword spotting, where a keyword needs to score high at one
    frame only (the one where it has just been heard), and the detector reads the same
    per-frame scores the clip was trained through. The forward model also streams with
    carried state (``initial_state``, ``step``), frame for frame equal to
    ``frame_logits`` on the whole recording.

    Args:
        config: architecture and feature settings.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.bidirectional = c.direction == "bidirectional"
        self.frontend = MFCC(c.features)
        self.norm = FeatureNorm(c.features.n_mfcc, c.feature_norm)
        self.stem = ConvStem(c.features.n_mfcc, c.conv_stem, c.conv_kernel) if c.conv_stem else None
        self.encoder = RECURRENT[c.cell](
            c.conv_stem or c.features.n_mfcc,
            c.hidden_size,
            num_layers=c.num_layers,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            batch_first=True,
            bidirectional=self.bidirectional,
        )
        width = 2 * c.hidden_size if self.bidirectional else c.hidden_size
        if self.bidirectional:  # a forward model has no ``pool``: its head runs per frame
            self.pool = AttentionPool(width, c.attention_dim)
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(width, c.num_classes))

    def features(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Normalised MFCCs and their valid frame counts.

        Args:
            wave: (B, N) waveforms.
            lengths: (B,) valid samples per clip; None means all N.

        Returns:
            (B, T, n_mfcc) features (zero on padded frames) and (B,) frame lengths.
        """
        with torch.autocast(wave.device.type, enabled=False):
            feats = self.frontend(wave)  # (B, T, F)
        num_frames = feats.shape[1]
        if lengths is None:
            frame_lengths = torch.full((wave.shape[0],), num_frames, device=wave.device)
        else:
            frame_lengths = self.config.features.num_frames(lengths.to(wave.device))
            frame_lengths = frame_lengths.clamp(max=num_frames)
        return self.norm(feats, frame_mask(frame_lengths, num_frames)), frame_lengths

    def encoder_input(self, feats: Tensor, frame_lengths: Tensor) -> Tensor:
        """What the recurrent encoder reads: the features, or with a ``conv_stem`` its
        (B, T, C) output, zero on padded frames."""
        if self.stem is None:
            return feats
        return self.stem(feats, frame_mask(frame_lengths, feats.shape[1]))

    def encode(self, feats: Tensor, frame_lengths: Tensor) -> Tensor:
        """(B, T, F) features -> (B, T, D) encoder states (zero on padded frames); D is 2H
        for a bidirectional model, H for a forward one."""
        num_frames = feats.shape[1]
        feats = self.encoder_input(feats, frame_lengths)
        if not self.bidirectional:  # a frame's state never depends on later (padded) frames
            mask = frame_mask(frame_lengths, num_frames)
            return self.encoder(feats)[0] * mask.unsqueeze(-1).to(feats.dtype)
        if bool((frame_lengths == num_frames).all()):
            return self.encoder(feats)[0]
        packed = pack_padded_sequence(
            feats, frame_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.encoder(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=num_frames)[0]

    def classify(self, feats: Tensor, frame_lengths: Tensor) -> dict[str, Tensor]:
        """Encoder, pooling and head on features.

        Returns:
            ``logits`` (B, C), ``attention`` (B, T) and ``states`` (B, T, D). For a forward
            model also ``frame_logits`` (B, T, C), and ``attention`` is one-hot on the
            frame whose score became the predicted class's clip logit (the frame the
            maximum picks, the only one its gradient reaches).
        """
        states = self.encode(feats, frame_lengths)
        mask = frame_mask(frame_lengths, feats.shape[1])
        if self.bidirectional:
            pooled, attention = self.pool(states, mask)
            return {"logits": self.head(pooled), "attention": attention, "states": states}
        frame_logits = self.head(states)  # (B, T, C)
        masked = frame_logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        logits, where = masked.max(1)  # (B, C) each: the best score and its frame
        frame = where.gather(1, logits.argmax(-1, keepdim=True)).squeeze(1)  # (B,)
        attention = nn.functional.one_hot(frame, feats.shape[1]).to(states.dtype)  # (B, T)
        return {
            "logits": logits,
            "attention": attention,
            "states": states,
            "frame_logits": frame_logits,
        }

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, N) waveforms (and optional (B,) lengths) -> (B, C) logits."""
        feats, frame_lengths = self.features(wave, lengths)
        return self.classify(feats, frame_lengths)["logits"]

    def frame_logits(self, wave: Tensor) -> Tensor:
        """Per-frame logits of whole waveforms in one pass (forward models only).

        Args:
            wave: (B, N) waveforms.

        Returns:
            (B, T, C) logits, ``T = 1 + (N - n_fft) // hop_length`` (a signal shorter
            than one frame is zero-padded to one, as ``forward`` does; ``step`` waits for
            the frame to complete instead).
        """
        self._require_forward("frame_logits")
        feats, _ = self.features(wave)  # (B, T, F)
        return self.head(self.encoder(feats)[0])

    def initial_state(
        self, batch: int = 1, device: torch.device | str | None = None
    ) -> StreamState:
        """The state before any audio: no samples, zero recurrent state (forward models
        only).

        Args:
            batch: streams run side by side.
            device: where the state lives; the model's device by default.
        """
        self._require_forward("initial_state")
        device = self.frontend.window.device if device is None else device
        samples = torch.zeros(batch, 0, device=device)
        h = torch.zeros(self.config.num_layers, batch, self.config.hidden_size, device=device)
        return StreamState(samples, h, torch.zeros_like(h) if self.config.cell == "lstm" else None)

    def step(self, chunk: Tensor, state: StreamState | None = None) -> tuple[Tensor, StreamState]:
        """Stream audio through a forward model: the frames the new samples complete.

        Feeding a recording in chunks of any sizes gives, concatenated over time, the
        ``frame_logits`` of the whole recording. Run it in eval mode (in training mode
        dropout applies and global feature statistics keep updating).

        Args:
            chunk: (B, n) new samples, any n >= 0 (less than one hop, one hop, several
                seconds).
            state: what the previous step returned; None starts the stream
                (``initial_state(B)``).

        Returns:
            (B, k, C) logits of the k frames completed by this chunk (k may be 0), and the
            state to pass to the next step.

        Raises:
            ValueError: a bidirectional model, or a chunk whose batch differs from the
                state's.
        """
        self._require_forward("step")
        if state is None:
            state = self.initial_state(chunk.shape[0], chunk.device)
        if chunk.ndim != 2 or chunk.shape[0] != state.samples.shape[0]:
            raise ValueError(
                f"chunk must be (B, n) with B = {state.samples.shape[0]} streams, "
                f"got shape {tuple(chunk.shape)}"
            )
        f = self.config.features
        wave = torch.cat([state.samples, chunk.to(state.samples.dtype)], dim=1)  # (B, L + n)
        frames = f.complete_frames(wave.shape[1])
        if frames == 0:
            empty = wave.new_zeros(wave.shape[0], 0, self.config.num_classes)
            return empty, state._replace(samples=wave)
        feats, _ = self.features(wave[:, : (frames - 1) * f.hop_length + f.n_fft])  # (B, k, F)
        hidden = state.h if state.c is None else (state.h, state.c)
        out, hidden = self.encoder(feats, hidden)  # (B, k, H)
        h, c = hidden if isinstance(hidden, tuple) else (hidden, None)
        rest = wave[:, frames * f.hop_length :].clone()  # (B, L' < n_fft): not yet framed
        return self.head(out), StreamState(rest, h, c)

    def _require_forward(self, what: str) -> None:
        if self.bidirectional:
            raise ValueError(
                f"{what} needs a forward model (model.architecture.direction: forward); "
                "a bidirectional one sees the whole clip, so stream it with a sliding "
                "window (speech_gru.runtime.detector.StreamingDetector)"
            )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
