"""Export a trained model for deployment: TorchScript or ONNX, optionally int8.

The exported model is self-contained: raw 16 kHz waveforms ``(B, N)`` in, class
probabilities ``(B, C)`` out, MFCCs included. The label list travels with it (TorchScript:
the extra file ``labels.json``; ONNX: the metadata entry ``labels``), and its number of
outputs (``classes``, what a loader learns the shape from without running it), so it runs with plain
``torch.jit.load`` or ``onnxruntime`` and no ``speech_gru`` package. A checkpoint's
calibrated operating point (``speech_gru.analysis.calibrate``) travels too, as JSON text: the entry
``operating_point`` of TorchScript's ``metadata.json`` and of ONNX's metadata, and so does
the model's window, ``window_s`` (seconds; the length of the example input an export is
traced with and of the windows a detector gives it; every entry:
``speech_gru.runtime.checkpoint.export_metadata``)::

    model = torch.jit.load("kws.pt", _extra_files=(extra := {"labels.json": ""}))
    labels = json.loads(extra["labels.json"])
    probs = model(wave)                                    # (B, N) float32 -> (B, C)

    session = onnxruntime.InferenceSession("kws.onnx")
    labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
    probs = session.run(None, {"waveform": wave.numpy()})[0]
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from speech_gru.core.atomic import write_atomic
from speech_gru.core.explicit_gru import gru_gates
from speech_gru.core.features import MFCC, dft_basis
from speech_gru.core.model import KeywordModel
from speech_gru.runtime.checkpoint import (
    HYPER_PARAMETERS,
    OPERATING_POINT,
    export_metadata,
    is_training_checkpoint,
    load_checkpoint_model,
    read_operating_point,
)

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17

HARMLESS_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # (category, message regex, module regex): what torch says during a normal export. Each
    # is matched by its own text, so any other warning (and every error) still shows.
    # torch 2.14 deprecates TorchScript, the TorchScript-based ONNX exporter and torch.ao
    # quantization, all of which the exports use on purpose (files that run with plain
    # torch.jit.load or onnxruntime); the README says so.
    (FutureWarning, r"`?torch\.jit\.\w+`? is deprecated", ""),
    (DeprecationWarning, r"You are using the legacy TorchScript-based ONNX export", ""),
    (DeprecationWarning, r"The feature will be removed", r"torch\.onnx\."),
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated", ""),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel", r"torch\.ao\."),
    # It advises exporting with batch 1, which this does (any batch size runs).
    (UserWarning, r"Exporting a model to ONNX with a batch_size other than 1", r"torch\.onnx\."),
    # Branches traced as constants: nn.GRU's / nn.LSTM's input checks, and the padding of a
    # clip shorter than one frame (so the ONNX model needs at least n_fft samples).
    (
        torch.jit.TracerWarning,
        r"Converting a tensor to a Python boolean",
        r"torch\.nn\.modules\.rnn|speech_gru\.core\.features",
    ),
)


@contextmanager
def known_warnings_silenced() -> Iterator[None]:
    """Hide ``HARMLESS_WARNINGS`` (only those) inside the block; filters restored after."""
    with warnings.catch_warnings():
        for category, message, module in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message, category, module)
        yield


class _ClipEncoder(nn.Module):
    """What both inference wrappers share: a model's frontend, feature norm, encoder and
    head, and the encoder states of a batch of equal-length clips (no padding masks, which
    keeps the graph simple enough for TorchScript and ONNX)."""

    def __init__(self, model: KeywordModel) -> None:
        super().__init__()
        self.frontend = model.frontend
        self.norm = model.norm
        self.stem = model.stem
        self.encoder = model.encoder
        self.head = model.head

    def encode(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N) waveforms -> (B, T, D) encoder states and the (B, T) all-true mask."""
        feats = self.frontend(waveform)  # (B, T, F)
        mask = torch.ones(feats.shape[0], feats.shape[1], dtype=torch.bool, device=feats.device)
        feats = self.norm(feats, mask)
        if self.stem is not None:
            feats = self.stem(feats)
        return self.encoder(feats)[0], mask


class WaveformClassifier(_ClipEncoder):
    """A bidirectional KeywordModel for inference: (B, N) waveforms -> (B, C) probabilities,
    all clips of a batch the same length."""

    def __init__(self, model: KeywordModel) -> None:
        super().__init__(model)
        self.pool = model.pool

    def forward(self, waveform: Tensor) -> Tensor:
        states, mask = self.encode(waveform)  # (B, T, 2H)
        pooled, _ = self.pool(states, mask)  # (B, 2H)
        return self.head(pooled).softmax(-1)  # (B, C)


class FrameMaxClassifier(_ClipEncoder):
    """A forward (streaming) KeywordModel for inference: each class's largest frame logit,
    as ``KeywordModel.classify`` takes it; (B, N) waveforms -> (B, C) probabilities."""

    def forward(self, waveform: Tensor) -> Tensor:
        states, _ = self.encode(waveform)  # (B, T, H)
        return self.head(states).amax(1).softmax(-1)  # (B, C)


class FrameLogMel(nn.Module):
    """The log-mel part of the MFCC frontend for exactly one frame: (B, n_fft) samples ->
    (B, n_mels) natural-log mel energies (floored), the spectrum as one matrix product with
    the windowed DFT basis (``features.dft_basis``). The rest of the MFCC (the dB scale,
    the DCT) is linear, so ``StreamingStep`` folds it into the first layer's weights.

    Args:
        frontend: the model's MFCC module (its window, filterbank and floor).
    """

    def __init__(self, frontend: MFCC) -> None:
        super().__init__()
        self.register_buffer("dft", dft_basis(frontend.window)[:, 0, :].T.contiguous())
        self.register_buffer("fbank", frontend.fbank)
        self.log_floor = frontend.log_floor
        self.bins = frontend.fbank.shape[0]

    def forward(self, frame: Tensor) -> Tensor:
        real, imag = torch.matmul(frame, self.dft).split(self.bins, dim=-1)  # (B, F) each
        mel = torch.matmul(real.square() + imag.square(), self.fbank)  # (B, n_mels)
        return torch.log(mel.clamp(min=self.log_floor))


class StreamingStep(nn.Module):
    """One frame of a forward KeywordModel with its state as explicit inputs and outputs,
    for runtimes that cannot keep state inside a model (``export --streaming``)::

        audio   (B, hop)            the frame's new samples
        samples (B, n_fft - hop)    the samples before them (the frame's first part)
        hidden  (layers, B, H)      recurrent state; an LSTM's h then c (2 * layers)
        past    (B, T - 1, C)       logits of the window's earlier frames (-inf: none yet)
     -> probabilities (B, C)        softmax of each class's largest logit over the window
        logits  (B, C)              this frame's logits
        samples, hidden, past       the state for the next frame

    Frame for frame equal to ``KeywordModel.step`` followed by ``model.window_max``. The
    recurrent cells are written out as matrix products (``gru.gru_gates``; the LSTM's and
    the plain RNN's equations) with each layer's weights in two ``nn.Linear``: a one-step
    recurrent operator costs ONNX Runtime several times its arithmetic, and int8
    quantization then covers them.

    Args:
        model: a forward model.
        window: samples of the window whose frames the maximum runs over; by default the
            model's (``window_samples``, the clips it was trained on).
    """

    def __init__(self, model: KeywordModel, window: int | None = None) -> None:
        super().__init__()
        c, f = model.config, model.config.features
        window = c.window_samples if window is None else window
        if f.n_fft < f.hop_length:
            raise ValueError(f"n_fft {f.n_fft} < hop_length {f.hop_length}: frames skip samples")
        self.frontend = FrameLogMel(model.frontend)
        encoder = model.encoder
        self.input_side = nn.ModuleList()
        self.hidden_side = nn.ModuleList()
        for k in range(c.num_layers):
            for side, kind in ((self.input_side, "ih"), (self.hidden_side, "hh")):
                weight = getattr(encoder, f"weight_{kind}_l{k}")
                linear = nn.Linear(weight.shape[1], weight.shape[0])
                linear.weight.data.copy_(weight.detach())
                linear.bias.data.copy_(getattr(encoder, f"bias_{kind}_l{k}").detach())
                side.append(linear)
        with torch.no_grad():  # the dB scale, DCT and feature statistics, into layer 1
            self.input_side[0] = fold_features(self.input_side[0], model)
        self.head = model.head
        self.lstm = c.cell == "lstm"
        self.plain = c.cell == "rnn"
        self.size = c.hidden_size
        self.hop = f.hop_length
        self.layers = c.num_layers
        frames = f.num_frames(window)
        self.spec = {
            "frame_hop": f.hop_length,
            "n_fft": f.n_fft,
            "window_frames": frames,
            "samples": [f.n_fft - f.hop_length],
            "hidden": [c.num_layers * (2 if self.lstm else 1), c.hidden_size],
            "past": [frames - 1, c.num_classes],
        }

    def forward(
        self, audio: Tensor, samples: Tensor, hidden: Tensor, past: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        wave = torch.cat([samples, audio], dim=1)  # (B, n_fft): one frame
        x = self.frontend(wave)  # (B, n_mels): layer 1 takes the rest of the MFCC
        states = []
        for k, (input_side, hidden_side) in enumerate(
            zip(self.input_side, self.hidden_side, strict=True)
        ):
            h = hidden[k]  # (B, H)
            if self.plain:  # h' = tanh(W x + b_ih + U h + b_hh)
                x = torch.tanh(input_side(x) + hidden_side(h))
                states.append((x, x))
            elif self.lstm:
                cell = hidden[self.layers + k]
                i, f, g, o = (input_side(x) + hidden_side(h)).split(self.size, dim=-1)
                cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
                x = torch.sigmoid(o) * torch.tanh(cell)
                states.append((x, cell))
            else:
                x = gru_gates(input_side(x), hidden_side(h), h, self.size)[3]
                states.append((x, x))
        hidden = torch.stack([h for h, _ in states] + [c for _, c in states if self.lstm])
        logits = self.head(x)  # (B, C)
        window = torch.cat([past, logits.unsqueeze(1)], dim=1)  # (B, T, C): window_max's
        probs = window.amax(1).softmax(-1)
        return probs, logits, wave[:, self.hop :], hidden, window[:, 1:]

    def example(self, batch: int = 1) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Inputs of the right shapes (zero audio, the start state)."""
        hidden = torch.zeros(self.spec["hidden"][0], batch, self.spec["hidden"][1])
        return (
            torch.zeros(batch, self.hop),
            torch.zeros(batch, *self.spec["samples"]),
            hidden,
            torch.full((batch, *self.spec["past"]), float("-inf")),
        )


def fold_features(first: nn.Linear, model: KeywordModel) -> nn.Linear:
    """The first layer's input projection applied to natural-log mel energies instead of
    normalised MFCCs: with ``x = (c ln(mel) D - mean) / std`` (``c = 10 / ln 10``, dB; D the
    DCT), ``W x + b = W' ln(mel) + b'`` with ``W' = c W diag(1/std) D^T`` and
    ``b' = b - W (mean / std)``: one matrix product instead of four operations."""
    norm = model.norm
    scale = torch.ones(model.config.features.n_mfcc)
    shift = torch.zeros_like(scale)
    if norm.mode == "global":
        scale = torch.rsqrt(norm.running_var + 1e-5)
        shift = -norm.running_mean * scale
    weight = first.weight.double() * scale.double()  # (3H, n_mfcc)
    dct = model.frontend.dct.double() * (10.0 / math.log(10.0))  # (n_mels, n_mfcc)
    folded = nn.Linear(dct.shape[0], weight.shape[0])
    folded.weight.copy_((weight @ dct.T).float())
    folded.bias.copy_((first.bias.double() + weight @ (shift.double() / scale.double())).float())
    return folded


STEP_INPUTS = ("audio", "samples", "hidden", "past")
STEP_OUTPUTS = ("probabilities", "logits", "samples_out", "hidden_out", "past_out")


def inference_module(model: KeywordModel) -> nn.Module:
    """The export wrapper of a model: attention pooling or frame maximum, by its direction."""
    kind = FrameMaxClassifier if model.config.direction == "forward" else WaveformClassifier
    return kind(model).eval()


def quantize_int8(module: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of the recurrent and linear layers (weights int8,
    activations quantized on the fly); the MFCC frontend stays float32."""
    with known_warnings_silenced():  # torch.ao announces the deprecation of its qint8 tensors
        return torch.ao.quantization.quantize_dynamic(
            module, {nn.GRU, nn.LSTM, nn.RNN, nn.Linear}, dtype=torch.qint8
        )


def export_torchscript(wrapper: nn.Module, meta: dict[str, str], quantize: bool) -> bytes:
    """The TorchScript archive, in memory: ``torch.jit.save`` to a path aborts the whole
    process when the disk is full, where Python I/O raises an OSError."""
    module = quantize_int8(wrapper) if quantize else wrapper
    extra = {"labels.json": meta["labels"], "metadata.json": json.dumps(meta)}
    buffer = io.BytesIO()
    with known_warnings_silenced():  # TorchScript announces its own deprecation
        if isinstance(wrapper, StreamingStep):  # fixed shapes but the batch: traced
            compiled = torch.jit.trace(module, wrapper.example())
        else:
            compiled = torch.jit.script(module)
        torch.jit.save(compiled, buffer, _extra_files=extra)
    return buffer.getvalue()


def export_onnx(
    wrapper: nn.Module, meta: dict[str, str], quantize: bool, window: int = 16000
) -> bytes:
    """The ONNX model, in memory (int8: through a private scratch folder).

    Args:
        window: samples of the example waveform a clip model is traced with (the model's
            window); the graph takes any length.
    """
    import onnx

    if isinstance(wrapper, StreamingStep):  # its frontend is a matrix product already
        inputs, outputs, example = STEP_INPUTS, STEP_OUTPUTS, wrapper.example()
        batch_axis = {name: 1 if name.startswith("hidden") else 0 for name in inputs + outputs}
        axes = {name: {axis: "batch"} for name, axis in batch_axis.items()}
    else:
        wrapper.frontend.use_dft()  # one Conv: ONNX Runtime's STFT is ten times slower
        inputs, outputs, example = ("waveform",), ("probabilities",), (torch.zeros(1, window),)
        axes = {"waveform": {0: "batch", 1: "samples"}, "probabilities": {0: "batch"}}
    buffer = io.BytesIO()
    with known_warnings_silenced():  # see HARMLESS_WARNINGS
        torch.onnx.export(
            wrapper,
            example,
            buffer,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    if quantize:
        model = quantize_onnx(model)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


def quantize_onnx(model):  # noqa: ANN001, ANN201 - onnx.ModelProto in and out
    """ONNX Runtime's dynamic int8; the MFCC frontend stays float32, as in TorchScript's."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    frontend = [n.name for n in model.graph.node if "/frontend/" in n.name]
    root = logging.getLogger()
    root.addFilter(_no_pre_processing_advice)
    try:  # it writes only to a path: a private scratch folder, removed in any case
        with tempfile.TemporaryDirectory(prefix="speech-gru-export-") as scratch:
            path = Path(scratch) / "int8.onnx"
            quantize_dynamic(model, path, weight_type=QuantType.QInt8, nodes_to_exclude=frontend)
            return onnx.load(str(path))
    finally:
        root.removeFilter(_no_pre_processing_advice)


def _no_pre_processing_advice(record: logging.LogRecord) -> bool:
    """ONNX Runtime's advice for image models, which would not change this graph."""
    return not record.getMessage().startswith("Please consider to run pre-processing")


class ExportError(Exception):
    """The export cannot be written; ``str()`` is one line naming the file."""


def check_output(out: Path, checkpoint: Path) -> None:
    """Refuse an output that an export must never replace.

    Raises:
        ExportError: ``out`` is a folder, not a regular file (a device, a pipe), the
            checkpoint being exported (under any name), or another training checkpoint.
            An earlier export or any other file is replaced (atomically).
    """
    if out.is_dir():
        raise ExportError(f"{out}: is a folder, not a file to write")
    if _same_file(out, checkpoint):
        raise ExportError(f"{out}: is the checkpoint being exported; choose another output file")
    if out.exists() and not out.is_file():
        raise ExportError(f"{out}: is not a regular file; choose a file to write")
    if out.is_file() and is_training_checkpoint(out):
        raise ExportError(f"{out}: is a training checkpoint; an export never replaces one")


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links too
    except OSError:  # one of them does not exist
        return False


def export(
    checkpoint: str | Path,
    out: str | Path,
    fmt: str = "torchscript",
    quantize: bool = False,
    streaming: bool = False,
) -> Path:
    """Write a self-contained model file from a training checkpoint.

    The file is written whole or not at all (``speech_gru.core.atomic``): on failure an
    earlier file at ``out`` is left as it was.

    Args:
        checkpoint: a checkpoint of the training recipe.
        out: the file to write (parent folders are created); see ``check_output`` for
            what it may not be.
        fmt: ``"torchscript"`` or ``"onnx"``.
        quantize: int8 dynamic quantization of the recurrent and linear layers.
        streaming: write one frame of a forward model with its state as inputs and
            outputs (``StreamingStep``) instead of the clip classifier.

    Returns:
        The written path.

    Raises:
        ModelLoadError: the checkpoint cannot be loaded, or its operating point is malformed.
        ExportError: ``out`` is refused or cannot be written, or ``streaming`` for a
            bidirectional model, with a one-line reason.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    model, labels, loaded = load_checkpoint_model(checkpoint)
    if streaming and model.bidirectional:
        raise ExportError(
            f"{checkpoint}: a bidirectional model cannot stream with state; --streaming "
            "needs a forward model (model.architecture.direction: forward)"
        )
    point = read_operating_point(Path(checkpoint), loaded.get(OPERATING_POINT), labels)
    out = Path(out)
    try:
        check_output(out, Path(checkpoint))
        target = Path(os.path.realpath(out))  # through a symbolic link, as open() would
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ExportError(
                f"{out}: cannot write ({out.parent} is a file, not a folder)"
            ) from None
        wrapper = StreamingStep(model).eval() if streaming else inference_module(model)
        spec = wrapper.spec if streaming else None
        hparams = dict(loaded[HYPER_PARAMETERS])
        meta = export_metadata(labels, hparams, point, spec, model.config.window_s)
        with torch.no_grad():
            if fmt == "torchscript":
                data = export_torchscript(wrapper, meta, quantize)
            else:
                data = export_onnx(wrapper, meta, quantize, model.config.window_samples)
        write_atomic(target, lambda f: f.write(data))
    except OSError as err:
        raise ExportError(f"{out}: cannot write ({err.strerror or err})") from None
    return out
