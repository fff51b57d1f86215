"""Load a trained or exported model and classify waveforms.

``load_classifier`` takes a training checkpoint (``.ckpt``), a TorchScript export or an
ONNX export (see ``speech_gru.export``); every kind becomes a ``Classifier`` that maps
waveforms of any lengths to class probabilities.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from speech_gru.labels import resolve_labels
from speech_gru.model import KeywordModel, ModelConfig
from speech_gru.stream import OperatingPoint

Backend = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]
"""(B, N) float32 waveforms and optional (B,) lengths -> (B, C) probabilities."""


class ModelLoadError(Exception):
    """A model file could not be loaded; ``str()`` is one line naming the file."""


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
    """

    backend: Backend
    labels: list[str]
    source: Path
    kind: str
    metadata: dict = field(default_factory=dict)
    takes_lengths: bool = False
    operating_point: OperatingPoint | None = None

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


def torchscript_backend(module: torch.jit.ScriptModule) -> Backend:
    @torch.inference_mode()
    def run(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        return module(torch.from_numpy(batch)).numpy()

    return run


def onnx_backend(session) -> Backend:  # noqa: ANN001 - an onnxruntime.InferenceSession
    def run(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        return session.run(None, {"waveform": batch})[0]

    return run


def load_checkpoint_model(path: str | Path) -> tuple[KeywordModel, list[str], dict]:
    """The KeywordModel (eval mode, CPU), labels and the whole checkpoint dict
    (``hyper_parameters``, ``test_metrics``, ``epoch``, ...), from one read of the file.

    The model is built from the stored config, nested or of the older flat form (see
    ``ModelConfig.from_hparams``), without Lightning.

    Raises:
        ModelLoadError: missing file, or a file that is not a speech_gru checkpoint.
    """
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
        hparams = checkpoint["hyper_parameters"]
        labels = resolve_labels(hparams["labels"])
        model = KeywordModel(ModelConfig.from_hparams(hparams, len(labels)))
        prefix = "model."  # the KeywordSpotter's attribute
        state = {
            key.removeprefix(prefix): value
            for key, value in checkpoint["state_dict"].items()
            if key.startswith(prefix)
        }
        model.load_state_dict(state)
    except Exception as err:  # noqa: BLE001 - a mismatched checkpoint fails in many ways
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(f"{path}: not a speech_gru checkpoint ({reason})") from None
    return model.eval(), labels, checkpoint


def load_classifier(path: str | Path) -> Classifier:
    """Load a checkpoint, a TorchScript export or an ONNX export, by content.

    Raises:
        ModelLoadError: a missing or unreadable file, with a one-line reason.
    """
    path = Path(path)
    kind = model_kind(path)
    if kind == "onnx":
        return _load_onnx(path)
    if kind == "torchscript":
        return _load_torchscript(path)
    model, labels, checkpoint = load_checkpoint_model(path)
    metadata = {
        "hyper_parameters": dict(checkpoint["hyper_parameters"]),
        "datamodule_hyper_parameters": dict(checkpoint.get("datamodule_hyper_parameters") or {}),
        "test_metrics": checkpoint.get("test_metrics", {}),
        "epoch": checkpoint.get("epoch"),
        "version": checkpoint.get("speech_gru_version"),
    }
    point = operating_point(path, checkpoint.get("operating_point"), labels)
    if point is not None:
        metadata["operating_point"] = point.to_dict()
    return Classifier(checkpoint_backend(model), labels, path, "checkpoint", metadata, True, point)


def operating_point(path: Path, value: object, labels: Sequence[str]) -> OperatingPoint | None:
    """The operating point a model file stores: a dict (checkpoints) or its JSON text
    (exports); None when there is none.

    Raises:
        ModelLoadError: a malformed entry, with a one-line reason.
    """
    if value is None:
        return None
    data = _json(value) if isinstance(value, str | bytes) else value
    if data is None:
        raise ModelLoadError(f"{path}: operating_point metadata is not a JSON object")
    try:
        return OperatingPoint.from_dict(data, labels)
    except ValueError as err:
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(f"{path}: operating_point metadata is malformed ({reason})") from None


def model_kind(path: str | Path) -> str:
    """``"onnx"`` (by its suffix), ``"torchscript"`` (by content) or ``"checkpoint"``.

    Raises:
        ModelLoadError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    if path.suffix == ".onnx":
        return "onnx"
    return "torchscript" if _is_torchscript(path) else "checkpoint"


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code; ``torch.save`` checkpoints do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_torchscript(path: Path) -> Classifier:
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
    meta = _json(extra["metadata.json"] or "{}")
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: metadata.json is not a JSON object")
    _check_hyper_parameters(path, meta)
    backend = torchscript_backend(module.eval())
    labels = _labels(path, extra["labels.json"], _output_size(path, backend))
    point = operating_point(path, meta.get("operating_point"), labels)
    return Classifier(backend, labels, path, "torchscript", meta, operating_point=point)


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
    _check_hyper_parameters(path, meta)
    backend = onnx_backend(session)
    shape = session.get_outputs()[0].shape  # e.g. ["batch", 12]
    size = shape[-1] if shape and isinstance(shape[-1], int) else _output_size(path, backend)
    labels = _labels(path, meta["labels"], size)
    point = operating_point(path, meta.get("operating_point"), labels)
    return Classifier(backend, labels, path, "onnx", meta, operating_point=point)


def _json(text: str | bytes) -> object:
    """Parsed JSON, or None when ``text`` is not JSON (or nested too deep to parse)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def _labels(path: Path, text: str | bytes, size: int) -> list[str]:
    """The labels an export records, checked against its number of outputs.

    They are model-provided text: any strings, control characters included (whoever
    prints them escapes them).
    """
    labels = _json(text)
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ModelLoadError(f"{path}: labels metadata is not a JSON list of strings")
    if len(labels) != size:
        raise ModelLoadError(
            f"{path}: labels metadata has {len(labels)} entries for {size} model outputs"
        )
    return labels


def _check_hyper_parameters(path: Path, meta: dict) -> None:
    value = meta.get("hyper_parameters", "{}")
    if not isinstance(_json(value) if isinstance(value, str) else value, dict):
        raise ModelLoadError(f"{path}: hyper_parameters metadata is not a JSON object")


def _output_size(path: Path, backend: Backend) -> int:
    """The number of classes an export gives, from one second of silence."""
    try:
        probs = backend(np.zeros((1, 16000), dtype=np.float32), None)
        if probs.ndim != 2:
            raise ValueError(f"output shape {tuple(probs.shape)}, not (batch, classes)")
    except Exception as err:  # noqa: BLE001 - whatever the file's code raises
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(f"{path}: the model does not run on 1 s of audio ({reason})") from None
    return probs.shape[-1]
