"""Load a trained or exported model and classify waveforms.

``load_classifier`` takes a training checkpoint (``.ckpt``), an ONNX export or, when
trusted, a TorchScript export (see ``speech_gru.runtime.export``); every kind becomes a
``Classifier`` that maps waveforms of any lengths to class probabilities. What the files
hold, and reading it, is ``speech_gru.runtime.checkpoint``'s; this module runs what it
reads. A forward model also gets a ``Stepper`` (``ModelStepper``, ``ExportStepper``) that
``Classifier.scorer`` wraps in a ``StatefulScorer`` (``speech_gru.runtime.stateful``);
loading never imports the detector. Every kind says how long a window the model scores
(``Classifier.window_s``: a checkpoint's ``window_s`` hyper-parameter, an export's
``window_s`` metadata; 1 s for files from before either was written).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.core.features import complete_frames
from speech_gru.core.model import (
    DEFAULT_WINDOW_S,
    KeywordModel,
    StreamState,
    check_window_s,
    window_max,
)
from speech_gru.runtime.checkpoint import (
    CLASSES,
    DATA_SETTINGS,
    HYPER_PARAMETERS,
    OPERATING_POINT,
    TEST_METRICS,
    VERSION,
    WINDOW_S,
    ModelLoadError,
    OperatingPoint,
    export_labels,
    load_checkpoint_model,
    model_kind,
    parse_json,
    read_export_metadata,
    read_operating_point,
    streaming_spec,
)
from speech_gru.runtime.stateful import Hops, Scorer, StatefulScorer, Stepper

Backend = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]
"""(B, N) float32 waveforms and optional (B,) lengths -> (B, C) probabilities."""


@dataclass
class Classifier:
    """A model ready for inference.

    Attributes:
        backend: computes probabilities of a batch (see ``Backend``).
        labels: class names, in output order.
        source: the file it was loaded from.
        kind: ``"checkpoint"``, ``"torchscript"`` or ``"onnx"``.
        metadata: what the file records besides weights (hyper-parameters, test metrics;
            a checkpoint's data settings, which say how its speakers were split).
        takes_lengths: the backend masks padding itself; otherwise clips of different
            lengths are run in separate batches.
        operating_point: the detector settings the model was calibrated at (None: not
            calibrated); stored as ``operating_point`` in checkpoints and exports.
        stepper: the model run frame by frame with carried state, for a model that can
            (a forward model's checkpoint, a streaming export); None for a model that
            scores whole windows.
        window_s: seconds of audio the model was trained on and scores at a time (its
            ``ModelConfig.window_s``): the detector's window (``factory.detector_config``)
            and the length a clip is cut or padded to.
    """

    backend: Backend
    labels: list[str]
    source: Path
    kind: str
    metadata: dict = field(default_factory=dict)
    takes_lengths: bool = False
    operating_point: OperatingPoint | None = None
    stepper: Stepper | None = None
    window_s: float = DEFAULT_WINDOW_S

    @property
    def window(self) -> int:
        """``window_s`` in samples at 16 kHz (16000 for a 1 s model)."""
        return round(self.window_s * SAMPLE_RATE)

    def scorer(self, config: Hops) -> Scorer:
        """What a ``StreamingDetector`` with these settings (a ``DetectorConfig``) scores
        windows with: a new
        ``StatefulScorer`` (one per stream) when the model carries its state, else
        ``score_windows``."""
        if self.stepper is None:
            return self.score_windows
        return StatefulScorer(self.stepper, config)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """(B, window) float32 -> (B, C) probabilities, in one forward pass: the scorer
        ``StreamingDetector`` takes."""
        return self.predict(windows, batch_size=len(windows)).numpy()

    def predict(self, waves: Tensor | np.ndarray | Sequence, batch_size: int = 64) -> Tensor:
        """Class probabilities of each waveform.

        Args:
            waves: a (B, N) array or tensor, or a list of 1-D waveforms of any lengths.
            batch_size: waveforms per forward pass.

        Returns:
            (B, C) float32 probabilities on the CPU.
        """
        waves = [np.asarray(w, dtype=np.float32) for w in waves]
        out = np.zeros((len(waves), len(self.labels)), dtype=np.float32)
        groups = [list(range(len(waves)))]
        if not self.takes_lengths:  # equal lengths per batch
            by_length: dict[int, list[int]] = {}
            for i, w in enumerate(waves):
                by_length.setdefault(w.size, []).append(i)
            groups = list(by_length.values())
        for group in groups:
            for start in range(0, len(group), batch_size):
                index = group[start : start + batch_size]
                lengths = np.array([waves[i].size for i in index])
                batch = np.zeros((len(index), lengths.max()), dtype=np.float32)
                for row, i in enumerate(index):
                    batch[row, : lengths[row]] = waves[i]
                same = bool((lengths == lengths[0]).all())
                out[index] = self.backend(batch, None if same else lengths)
        return torch.from_numpy(out)


def checkpoint_backend(model: KeywordModel) -> Backend:
    @torch.inference_mode()
    def run(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        logits = model(
            torch.from_numpy(batch), None if lengths is None else torch.from_numpy(lengths)
        )
        return logits.float().softmax(-1).numpy()

    return run


class BatchingStepper:
    """What the ``Stepper``s here share: ``many`` steps several streams' requests in as few
    model calls as it can (``serve`` batches its clients' frames through it).

    A subclass's state is ``(samples, *rest)``: the (B, L) samples not yet framed first;
    ``_join`` stacks the rest of several states along their batch axes and ``_part``
    takes one stream's back out.
    """

    frame_hop: int
    n_fft: int

    def __call__(self, audio: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        raise NotImplementedError

    def _join(self, states: Sequence[tuple]) -> tuple:
        raise NotImplementedError

    def _part(self, state: tuple, index: int) -> tuple:
        raise NotImplementedError

    def many(self, requests: Sequence[tuple[np.ndarray, tuple]]) -> list[tuple[np.ndarray, tuple]]:
        """Step each (audio (1, n), state) request as ``__call__`` would, one model call
        for all the streams whose new audio completes the same number of frames.

        Returns:
            (probabilities (1, k, C), next state) per request, in order.
        """
        results: list = [None] * len(requests)
        groups: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, (audio, state) in enumerate(requests):
            pending = np.asarray(state[0], dtype=np.float32)
            wave = np.concatenate([pending, np.asarray(audio, np.float32)], axis=1)  # (1, L + n)
            frames = complete_frames(wave.shape[1], self.n_fft, self.frame_hop)
            groups.setdefault(frames, []).append((i, wave))
        for frames, members in groups.items():
            span = (frames - 1) * self.frame_hop + self.n_fft if frames else 0
            spans = np.concatenate([wave[:, :span] for _, wave in members])  # (G, span)
            joined = self._join([requests[i][1] for i, _ in members])
            probs, state = self(spans, joined)  # (G, k, C)
            for g, (i, wave) in enumerate(members):
                rest = wave[:, frames * self.frame_hop :] if frames else wave
                results[i] = probs[g : g + 1], (rest, *self._part(state, g)[1:])
        return results


class ModelStepper(BatchingStepper):
    """A forward KeywordModel run frame by frame (``KeywordModel.step``): the ``Stepper``
    of a checkpoint. Each frame's output is the softmax of the per-class maximum of the
    frame logits over the ``window`` samples ending with it (``window_max``).

    Args:
        model: a forward model, in eval mode.
        window: samples of the window; by default the model's (``window_samples``, the
            clips it was trained on).
    """

    def __init__(self, model: KeywordModel, window: int | None = None) -> None:
        f = model.config.features
        window = model.config.window_samples if window is None else window
        self.model = model
        self.frame_hop = f.hop_length
        self.n_fft = f.n_fft
        self.window_frames = f.num_frames(window)

    def start(self, batch: int = 1) -> tuple:
        past = torch.full(
            (batch, self.window_frames - 1, self.model.config.num_classes), float("-inf")
        )
        carried = self.model.initial_state(batch)
        return carried.samples, carried.h, carried.c, past

    @torch.inference_mode()
    def __call__(self, audio: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        samples, h, c, past = state
        carried = StreamState(torch.as_tensor(samples), h, c)
        logits, carried = self.model.step(torch.from_numpy(audio), carried)  # (B, k, C)
        out, past = window_max(past, logits)
        return out.softmax(-1).numpy(), (carried.samples, carried.h, carried.c, past)

    def _join(self, states: Sequence[tuple]) -> tuple:
        first = states[0]
        c = None if first[2] is None else torch.cat([s[2] for s in states], dim=1)
        h = torch.cat([s[1] for s in states], dim=1)  # (layers, G, H)
        past = torch.cat([s[3] for s in states])  # (G, T - 1, C)
        return torch.zeros(len(states), 0), h, c, past

    def _part(self, state: tuple, index: int) -> tuple:
        samples, h, c, past = state
        one = slice(index, index + 1)
        return samples[one], h[:, one], None if c is None else c[:, one], past[one]


StepFunction = Callable[..., Sequence[np.ndarray]]
"""A streaming export's graph: (audio (B, hop), samples (B, n_fft - hop), hidden, past)
-> (probabilities (B, C), logits (B, C), samples, hidden, past)."""


class ExportStepper(BatchingStepper):
    """A streaming export (``speech-gru export --streaming``) run frame by frame: one call
    of its graph per frame, the state passed back in, as the README's onnxruntime loop
    does. The ``Stepper`` of such a file.

    Args:
        run: the graph (see ``StepFunction``).
        spec: the export's ``streaming`` metadata: ``frame_hop``, ``n_fft`` and the
            state shapes (``hidden``: (layers, H) per stream; ``past``: (T - 1, C)).
    """

    def __init__(self, run: StepFunction, spec: dict) -> None:
        self.run = run
        self.frame_hop = int(spec["frame_hop"])
        self.n_fft = int(spec["n_fft"])
        self.hidden_shape = tuple(int(n) for n in spec["hidden"])
        self.past_shape = tuple(int(n) for n in spec["past"])

    def start(self, batch: int = 1) -> tuple:
        hidden = np.zeros((self.hidden_shape[0], batch, self.hidden_shape[1]), np.float32)
        past = np.full((batch, *self.past_shape), -np.inf, np.float32)
        return np.zeros((batch, 0), np.float32), hidden, past

    def frames(self, audio: np.ndarray, state: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(B, n) new samples -> (B, k, C) probabilities and (B, k, C) logits of the k
        frames they complete, and the next state."""
        wave, hidden, past = state
        wave = np.concatenate([wave, np.asarray(audio, np.float32)], axis=1)  # not yet framed
        hop, context = self.frame_hop, self.n_fft - self.frame_hop
        count = complete_frames(wave.shape[1], self.n_fft, hop)
        probs, logits = [], []
        for j in range(count):
            start = j * hop
            p, z, _, hidden, past = self.run(
                wave[:, start + context : start + self.n_fft],
                wave[:, start : start + context],
                hidden,
                past,
            )
            probs.append(p)
            logits.append(z)
        state = (wave[:, count * hop :], hidden, past)
        if not count:
            empty = np.zeros((wave.shape[0], 0, self.past_shape[1]), np.float32)
            return empty, empty, state
        return np.stack(probs, axis=1), np.stack(logits, axis=1), state

    def __call__(self, audio: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        probs, _, state = self.frames(audio, state)
        return probs, state

    def _join(self, states: Sequence[tuple]) -> tuple:
        hidden = np.concatenate([s[1] for s in states], axis=1)  # (layers, G, H)
        past = np.concatenate([s[2] for s in states])  # (G, T - 1, C)
        return np.zeros((len(states), 0), np.float32), hidden, past

    def _part(self, state: tuple, index: int) -> tuple:
        wave, hidden, past = state
        return wave[index : index + 1], hidden[:, index : index + 1], past[index : index + 1]

    def classify(self, batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        """A ``Backend``: each clip's softmax of its per-class largest frame logit (from
        zero state), as a forward checkpoint classifies it; a clip shorter than one frame
        is zero-padded to one."""
        if batch.shape[1] < self.n_fft:
            batch = np.pad(batch, ((0, 0), (0, self.n_fft - batch.shape[1])))
        _, logits, _ = self.frames(batch, self.start(len(batch)))  # (B, k, C)
        return torch.from_numpy(logits.max(1)).softmax(-1).numpy()


def torchscript_backend(module: torch.jit.ScriptModule) -> Backend:
    @torch.inference_mode()
    def run(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        return module(torch.from_numpy(batch)).numpy()

    return run


def onnx_backend(session) -> Backend:  # noqa: ANN001 - an onnxruntime.InferenceSession
    def run(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        return session.run(None, {"waveform": batch})[0]

    return run


TORCHSCRIPT_REFUSED = (
    "a TorchScript model runs code of its own when loaded (as torch.jit.load does); "
    "not loaded unless you trust its source: --trust-torchscript, or "
    "Spotter.load(path, trust_torchscript=True)"
)


def load_classifier(path: str | Path, trust_torchscript: bool = False) -> Classifier:
    """Load a checkpoint, a TorchScript export or an ONNX export: what the file is by its
    content, which must agree with its name (``checkpoint.model_kind``).

    A checkpoint is read weights-only and an ONNX file is a graph for ONNX Runtime: both
    are data, safe to take from anyone. A TorchScript file carries code that
    ``torch.jit.load`` runs, so it loads only with ``trust_torchscript``. No model is run
    here: the number of outputs, the labels and the state sizes come from the file's
    metadata.

    Args:
        path: the model file.
        trust_torchscript: load a TorchScript file, running its code (only for files from
            a source you trust).

    Raises:
        ModelLoadError: a missing or unreadable file, a name that disagrees with the
            content, or a TorchScript file without ``trust_torchscript``, with a one-line
            reason.
    """
    path = Path(path)
    kind = model_kind(path)
    if kind == "onnx":
        return _load_onnx(path)
    if kind == "torchscript":
        if not trust_torchscript:
            raise ModelLoadError(f"{path}: {TORCHSCRIPT_REFUSED}")
        return _load_torchscript(path)
    model, labels, checkpoint = load_checkpoint_model(path)
    metadata = {
        HYPER_PARAMETERS: dict(checkpoint[HYPER_PARAMETERS]),
        DATA_SETTINGS: dict(checkpoint.get(DATA_SETTINGS) or {}),
        TEST_METRICS: checkpoint.get(TEST_METRICS, {}),
        "epoch": checkpoint.get("epoch"),
        "version": checkpoint.get(VERSION),
    }
    point = read_operating_point(path, checkpoint.get(OPERATING_POINT), labels)
    if point is not None:
        metadata[OPERATING_POINT] = point.to_dict()
    return checkpoint_classifier(model, labels, path, metadata, point)


def checkpoint_classifier(
    model: KeywordModel,
    labels: list[str],
    path: Path,
    metadata: dict | None = None,
    point: OperatingPoint | None = None,
) -> Classifier:
    """The Classifier of a loaded checkpoint's model: it masks padding, a forward model
    streams with carried state (``ModelStepper``), and its window is the model's."""
    stepper = None if model.bidirectional else ModelStepper(model)
    backend = checkpoint_backend(model)
    return Classifier(
        backend, labels, path, "checkpoint", metadata or {}, True, point, stepper,
        model.config.window_s,
    )  # fmt: skip


def export_window_s(path: Path, meta: dict) -> float:
    """An export's ``window_s`` metadata entry; ``DEFAULT_WINDOW_S`` for an export written
    before it was recorded.

    Raises:
        ModelLoadError: an entry that is not a number of seconds in the allowed range.
    """
    value = meta.get(WINDOW_S)
    if value is None or value == "":
        return DEFAULT_WINDOW_S
    number = parse_json(value) if isinstance(value, str | bytes) else value
    try:
        return check_window_s(number)
    except ValueError as err:
        raise ModelLoadError(f"{path}: {WINDOW_S} metadata is malformed ({err})") from None


def _load_torchscript(path: Path) -> Classifier:
    """Load a TorchScript export, which runs the code the file carries: only for a caller
    that trusts it (``load_classifier``'s ``trust_torchscript``)."""
    extra = {"labels.json": "", "metadata.json": ""}
    try:
        with warnings.catch_warnings():  # torch.jit.load announces its own deprecation
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(f"{path}: not a readable TorchScript model ({reason})") from None
    if not extra["labels.json"]:
        raise ModelLoadError(f"{path}: TorchScript file without labels.json (not an export)")
    meta = read_export_metadata(path, extra["metadata.json"])
    module = module.eval()
    labels = export_labels(path, extra["labels.json"], meta.get(CLASSES))
    stepper = _stepper(path, meta, torchscript_step(module), len(labels))
    backend = torchscript_backend(module) if stepper is None else stepper.classify
    point = read_operating_point(path, meta.get(OPERATING_POINT), labels)
    window_s = export_window_s(path, meta)
    return Classifier(backend, labels, path, "torchscript", meta, False, point, stepper, window_s)


def torchscript_step(module: torch.jit.ScriptModule) -> StepFunction:
    @torch.inference_mode()
    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        return [out.numpy() for out in module(*(torch.from_numpy(a) for a in arrays))]

    return run


def onnx_step(session) -> StepFunction:  # noqa: ANN001 - an onnxruntime.InferenceSession
    def run(audio, samples, hidden, past) -> list[np.ndarray]:  # noqa: ANN001 - arrays
        feed = {"audio": audio, "samples": samples, "hidden": hidden, "past": past}
        return session.run(None, feed)

    return run


def _stepper(path: Path, meta: dict, run: StepFunction, classes: int) -> ExportStepper | None:
    """The ExportStepper of a streaming export (None for a clip export), its frame and
    state sizes from the metadata alone (checked: positive sizes, ``past`` of (frames,
    ``classes``)), so the file is never run to learn them."""
    if "streaming" not in meta:
        return None
    spec = streaming_spec(meta)
    try:
        stepper = ExportStepper(run, spec)
    except (TypeError, KeyError, ValueError):
        raise ModelLoadError(f"{path}: streaming metadata is malformed") from None
    sizes = (stepper.frame_hop, stepper.n_fft, *stepper.hidden_shape, *stepper.past_shape)
    shapes_ok = len(stepper.hidden_shape) == 2 and len(stepper.past_shape) == 2
    if not shapes_ok or min(sizes) < 1 or stepper.frame_hop > stepper.n_fft:
        raise ModelLoadError(f"{path}: streaming metadata is malformed")
    if stepper.past_shape[1] != classes:
        raise ModelLoadError(
            f"{path}: streaming metadata has {stepper.past_shape[1]} outputs for {classes} labels"
        )
    return stepper


def _load_onnx(path: Path) -> Classifier:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelLoadError(
            f"{path}: ONNX models need onnxruntime (pip install 'speech-gru[onnx]')"
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(f"{path}: not a readable ONNX model ({reason})") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if "labels" not in meta:
        raise ModelLoadError(f"{path}: ONNX model without a labels entry (not an export)")
    meta = read_export_metadata(path, meta)
    labels = export_labels(path, meta["labels"], meta.get(CLASSES))
    stepper = _stepper(path, meta, onnx_step(session), len(labels))
    backend = onnx_backend(session) if stepper is None else stepper.classify
    shape = session.get_outputs()[0].shape  # e.g. ["batch", 12]: the graph's, not run
    if shape and isinstance(shape[-1], int) and shape[-1] != len(labels):
        raise ModelLoadError(
            f"{path}: labels metadata has {len(labels)} entries for {shape[-1]} model outputs"
        )
    point = read_operating_point(path, meta.get(OPERATING_POINT), labels)
    window_s = export_window_s(path, meta)
    return Classifier(backend, labels, path, "onnx", meta, False, point, stepper, window_s)
