"""The model file: what a training checkpoint and an export's metadata hold, reading and
writing them, and the operating point that travels in both.

A training checkpoint is the dict Lightning saves with ``torch.save``; it is read here,
weights-only (never unpickling code), and nowhere else. Besides Lightning's own entries
(``epoch``, ``global_step``, optimizer and loop state) it holds:

* ``state_dict``: the ``KeywordSpotter``'s weights; the ``KeywordModel``'s are the entries
  under ``STATE_PREFIX`` (the LightningModule's attribute ``model``);
* ``hyper_parameters``: ``labels``, ``architecture`` and ``features`` (plain dicts of
  ``ArchitectureConfig`` and ``FeatureConfig``), ``window_s`` (the clip and window length
  in seconds; absent in checkpoints written before it was stored, which read as 1 s) and
  the training settings;
* ``datamodule_hyper_parameters``: the data settings (root, version, seed, speaker split);
* ``speech_gru_version``;
* ``test_metrics``: ``{"test/acc": ...}``, once fit's test ran (``record_test_metrics``);
* ``operating_point``: ``OperatingPoint.to_dict()``, once calibrated (``save_operating_point``).

An export (``speech_gru.runtime.export``) holds text entries instead (``export_metadata``):
``labels`` and ``hyper_parameters`` as JSON, ``classes`` (the number of outputs, so that
no loader runs a model to learn its shape), ``window_s`` (the window the model scores, in
seconds), ``speech_gru_version``, a description of its inputs and outputs, and as JSON
``operating_point`` when calibrated and ``streaming`` (frame and state sizes) for a
streaming export. Reading them back is ``read_export_metadata``.

Every refusal is one line naming the file: ``ModelLoadError`` for a model file that will
not load, ``CheckpointError`` (one of them) for a training checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speech_gru import __version__
from speech_gru.core.atomic import write_atomic
from speech_gru.core.labels import is_keyword, resolve_labels

if TYPE_CHECKING:
    import torch

    from speech_gru.core.model import KeywordModel

# torch (and the model, which needs it) is imported where a file is read or written: the
# command line reads the format's keys and operating points before any model loads.

STATE_PREFIX = "model."
"""Where the KeywordModel's weights sit in a checkpoint's ``state_dict``."""
HYPER_PARAMETERS = "hyper_parameters"
DATA_SETTINGS = "datamodule_hyper_parameters"
TEST_METRICS = "test_metrics"
OPERATING_POINT = "operating_point"
VERSION = "speech_gru_version"
CLASSES = "classes"
"""An export's metadata entry for its number of outputs per clip (``len(labels)``): what a
loader learns the model's shape from, without running it."""
WINDOW_S = "window_s"
"""The hyper-parameter, and an export's metadata entry, of the seconds of audio the model
scores at a time (``ModelConfig.window_s``); 1 s where absent."""


class ModelLoadError(Exception):
    """A model file could not be loaded; ``str()`` is one line naming the file."""


class CheckpointError(ModelLoadError):
    """A training checkpoint that will not be read or used; ``str()`` is one line naming it."""


# -- training checkpoints ----------------------------------------------------------------


ZIP_MAGIC = b"PK\x03\x04"
"""How a file written by ``torch.save`` starts (a zip archive)."""
PICKLE_MAGIC = b"\x80"
"""How the older ``torch.save`` format (a pickle, protocol 2 or later) starts."""


@dataclass(frozen=True)
class FileStamp:
    """What a file was when it was read: its size, modification time and the SHA-256 of
    the bytes read. A file saved again since (by training, another calibration) differs in
    at least one of them.
    """

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike) -> FileStamp:
        """The stamp of ``path`` as it is now.

        Raises:
            OSError: it cannot be read.
        """
        return _read_stamped(path)[1]


def _read_stamped(path: str | os.PathLike) -> tuple[bytes, FileStamp]:
    """The bytes of ``path`` and their stamp, from one open file (the size and time are
    those of the file the bytes came from, even if it is replaced meanwhile)."""
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        data = f.read()
    return data, FileStamp(len(data), info.st_mtime_ns, hashlib.sha256(data).hexdigest())


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The dict a training checkpoint holds, read weights-only from a local file.

    Raises:
        CheckpointError: a URL (Lightning would fetch it and unpickle it in full, running
            any code it carries), a missing file, or a file ``torch.load`` will not read
            weights-only.
    """
    return read_checkpoint_stamped(path, map_location)[0]


def read_checkpoint_stamped(
    path: str | os.PathLike, map_location: Any = "cpu"
) -> tuple[dict[str, Any], FileStamp]:
    """``read_checkpoint``, and the stamp of the bytes it parsed: a writer that means to
    replace the file compares it with ``FileStamp.of`` first (``save_operating_point``).

    Raises:
        CheckpointError: see ``read_checkpoint``.
    """
    if "://" in str(path):
        raise CheckpointError(
            f"{path}: remote checkpoints are not loaded; download the file and pass its local path"
        )
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data, stamp = _read_stamped(path)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise CheckpointError(f"{path}: cannot read ({reason})") from None
    if not data.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        raise CheckpointError(f"{path}: not a checkpoint file (neither a zip archive nor a pickle)")
    if data.startswith(ZIP_MAGIC) and _archive_holds(io.BytesIO(data), "constants.pkl"):
        # torch.load would refuse it too, after a multi-line warning that it "dispatches
        # to torch.jit.load"; one line here, and the archive's code is never looked at.
        raise CheckpointError(
            f"{path}: {KIND_WORDS['torchscript']}, not a training checkpoint; not loaded"
        )
    import torch

    try:
        checkpoint = torch.load(
            io.BytesIO(data), map_location=map_location or "cpu", weights_only=True
        )
    except Exception as err:  # noqa: BLE001 - unpickling fails in many ways
        raise _refused(path, err) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a speech_gru checkpoint (no hyper-parameters)")
    return checkpoint, stamp


def _refused(path: str | os.PathLike, err: Exception) -> CheckpointError:
    """The one-line error for a file that ``torch.load`` would not read."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
        # torch's advice to load it unsafely is left out; its reason is kept.
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()][1:]
        ignore = ("Check the documentation", "Please file an issue")
        detail = next((p for p in paragraphs if not p.startswith(ignore)), "")
        reason = f"it holds objects other than tensors and plain data, not loaded: {detail}"
    else:
        reason = f"not a PyTorch checkpoint: {type(err).__name__}: {text}"
    return CheckpointError(f"{path}: {' '.join(reason.split())[:240]}")


def stored_hyper_parameters(path: str | os.PathLike, checkpoint: Mapping) -> dict[str, Any]:
    """A checkpoint's hyper-parameters, without LightningCLI's ``_instantiator`` entry.

    Raises:
        CheckpointError: there are none, or the model settings are of the flat form
            that came before ``architecture`` and ``features`` (no longer read).
    """
    stored = checkpoint.get(HYPER_PARAMETERS)
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"{path}: not a speech_gru checkpoint (no hyper-parameters)")
    from speech_gru.core.model import ModelConfig

    hparams = dict(stored)
    hparams.pop("_instantiator", None)
    try:
        ModelConfig.check_nested(hparams)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return hparams


def model_state(checkpoint: Mapping, path: str | os.PathLike = "") -> dict[str, torch.Tensor]:
    """The KeywordModel's weights in a checkpoint (``state_dict`` entries under
    ``STATE_PREFIX``, the prefix removed).

    Raises:
        CheckpointError: the checkpoint has no ``state_dict``.
    """
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: not a speech_gru checkpoint (no state_dict)")
    return {
        key.removeprefix(STATE_PREFIX): value
        for key, value in state.items()
        if key.startswith(STATE_PREFIX)
    }


def load_checkpoint_model(path: str | Path) -> tuple[KeywordModel, list[str], dict]:
    """The KeywordModel (eval mode, CPU), labels and the whole checkpoint dict
    (``hyper_parameters``, ``test_metrics``, ``epoch``, ...), from one read of the file.

    The model is built from the stored config (``ModelConfig.from_hparams``), without
    Lightning.

    Raises:
        ModelLoadError: missing file, or a file that is not a speech_gru checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    checkpoint = read_checkpoint(path)
    model, labels = checkpoint_model(path, checkpoint)
    return model, labels, checkpoint


def checkpoint_model(path: str | Path, checkpoint: Mapping) -> tuple[KeywordModel, list[str]]:
    """The KeywordModel (eval mode, CPU) and labels of a checkpoint dict already read
    (``read_checkpoint``) from ``path``.

    Raises:
        ModelLoadError: it is not a speech_gru checkpoint.
    """
    from speech_gru.core.model import KeywordModel, ModelConfig

    hparams = stored_hyper_parameters(path, checkpoint)
    state = model_state(checkpoint, path)
    try:
        labels = resolve_labels(hparams["labels"])
        model = KeywordModel(ModelConfig.from_hparams(hparams, len(labels)))
        model.load_state_dict(state)
    except Exception as err:  # noqa: BLE001 - a mismatched checkpoint fails in many ways
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(f"{path}: not a speech_gru checkpoint ({reason})") from None
    return model.eval(), labels


def write_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written file under ``path`` (see
    ``speech_gru.core.atomic``); missing folders are created."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(checkpoint, f))


SLIM_KEYS = (
    "state_dict", HYPER_PARAMETERS, DATA_SETTINGS, VERSION, TEST_METRICS, OPERATING_POINT,
    "epoch", "global_step",
)  # fmt: skip
"""What a checkpoint keeps to be loaded, fine-tuned (``--model.init_from``), calibrated
and described: no optimizer, scheduler or loop state."""


def slim_checkpoint(path: str | os.PathLike, out: str | os.PathLike, *, half: bool = False) -> Path:
    """Write ``path``'s checkpoint without its training state (``SLIM_KEYS`` only, the
    weights as float32) to ``out``: how a model ships, at about a third of the size.
    ``half``: the weight matrices as float16 instead (half again; biases and the feature
    statistics stay float32). Loading casts them back to the model's float32.

    Raises:
        CheckpointError: ``path`` is not a readable training checkpoint.
        OSError: ``out`` cannot be written.
    """
    checkpoint = read_checkpoint(path)
    stored_hyper_parameters(path, checkpoint)  # a speech_gru checkpoint, nested settings
    slim = {key: checkpoint[key] for key in SLIM_KEYS if key in checkpoint}

    def stored(value: torch.Tensor) -> torch.Tensor:
        if not value.is_floating_point():
            return value
        return value.half() if half and value.dim() >= 2 else value.float()

    slim["state_dict"] = {
        key: stored(value)
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(STATE_PREFIX)
    }
    write_checkpoint(slim, out)
    return Path(out)


def record_test_metrics(path: Path, metrics: dict[str, float]) -> None:
    """Store test metrics inside a checkpoint (for ``speech-gru info``), atomically."""
    checkpoint = read_checkpoint(path)
    checkpoint[TEST_METRICS] = metrics
    write_checkpoint(checkpoint, path)


BACKUP_SUFFIX = ".bak"
"""What ``save_operating_point`` appends to the name of the file it replaces to keep the
previous one (``best.ckpt`` -> ``best.ckpt.bak``)."""


class ChangedError(CheckpointError):
    """The checkpoint changed on disk after it was read; nothing was written."""


def backup_path(path: str | os.PathLike) -> Path:
    """Where the previous version of ``path`` is kept (``best.ckpt.bak``)."""
    path = Path(path)
    return path.with_name(path.name + BACKUP_SUFFIX)


def save_operating_point(
    checkpoint: dict[str, Any],
    point: OperatingPoint,
    out: str | os.PathLike,
    source: str | os.PathLike | None = None,
    stamp: FileStamp | None = None,
) -> Path | None:
    """Write ``checkpoint`` with ``point`` as its operating point to ``out`` (through a
    symbolic link, as ``open`` would), atomically: a failed write leaves the file as it
    was; weights and training state are untouched.

    A file already at ``out`` is kept as ``backup_path(out)`` (an earlier backup there is
    replaced). With ``source`` and ``stamp`` (``read_checkpoint_stamped``), the write
    happens only if ``source`` is still the file that was read: the check runs after the
    new file is written in full and just before it is renamed into place, so a checkpoint
    saved meanwhile (by training, say) is never replaced by the older one read here.

    Returns:
        The backup written, or None when there was no file at ``out``.

    Raises:
        ChangedError: ``source`` differs from ``stamp`` (or is gone); nothing written.
        OSError: ``out`` cannot be written.
    """
    import torch

    checkpoint = {**checkpoint, OPERATING_POINT: point.to_dict()}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    target = Path(os.path.realpath(out))
    backup: list[Path] = []

    def write(f: Any) -> None:
        f.write(data)
        if source is not None and stamp is not None:
            try:
                now = FileStamp.of(source)
            except OSError:
                now = None
            if now != stamp:
                raise ChangedError(
                    f"{source}: changed on disk since it was read (saved again while "
                    "calibrating?); nothing written, run calibrate again"
                )
        if target.is_file():
            backup.append(_keep_backup(target))

    write_atomic(target, write)
    return backup[0] if backup else None


def _keep_backup(path: Path) -> Path:
    """Keep ``path`` as ``backup_path(path)``: a hard link when the file system allows
    one (instant, no second copy), else a copy; in either case made under a temporary
    name and renamed, so a backup is whole or absent."""
    import shutil
    import tempfile

    backup = backup_path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{backup.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)
        os.replace(tmp, backup)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup


# -- what kind of file -------------------------------------------------------------------


KIND_WORDS = {
    "checkpoint": "a weights-only training checkpoint",
    "torchscript": "a TorchScript model (which runs code of its own when loaded)",
    "onnx": "an ONNX model",
}
SUFFIX_KINDS = {
    ".ckpt": ("checkpoint",),
    ".onnx": ("onnx",),
    ".pt": ("checkpoint", "torchscript"),
    ".pth": ("checkpoint", "torchscript"),
}
"""What a file with each of these suffixes may be; any other name (none included) is
taken for what its content is."""
ONNX_FIRST_BYTE = b"\x08"
"""How an ONNX file starts: the protobuf tag of ``ModelProto.ir_version``, its field 1."""


def model_kind(path: str | Path) -> str:
    """``"checkpoint"``, ``"torchscript"`` or ``"onnx"``: what the file is by its content,
    which must agree with its name (``SUFFIX_KINDS``). Content that is none of them is
    ``"checkpoint"`` (reading it then says why it is not one), unless named ``.onnx``.

    A TorchScript file is a zip archive holding compiled code (``constants.pkl``); a
    training checkpoint one holding only pickled data (``data.pkl``), or an older
    ``torch.save`` pickle; an ONNX file a protobuf that starts with its ``ir_version``.

    Raises:
        ModelLoadError: the file does not exist, cannot be read, or its content is not
            what its name says (a TorchScript archive named ``.ckpt``, a ``.onnx`` that is
            not ONNX), in one line.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ModelLoadError(f"{path}: cannot read ({reason})") from None
    if head.startswith(ZIP_MAGIC):
        kind = "torchscript" if _archive_holds(path, "constants.pkl") else "checkpoint"
    elif head.startswith(PICKLE_MAGIC):
        kind = "checkpoint"
    elif head.startswith(ONNX_FIRST_BYTE):
        kind = "onnx"
    else:
        kind = None
    allowed = SUFFIX_KINDS.get(path.suffix.lower())
    if kind is None and allowed != ("onnx",):
        return "checkpoint"  # read_checkpoint says what is wrong with it
    if allowed is not None and kind not in allowed:
        named = f"named {path.suffix}, so {' or '.join(KIND_WORDS[k] for k in allowed)}"
        what = KIND_WORDS[kind] if kind else "neither a PyTorch file nor ONNX"
        raise ModelLoadError(f"{path}: {named}, but the file is {what}; not loaded")
    return kind


def runs_code(kind: str) -> bool:
    """Whether loading a model file of this kind can run code that the file carries:
    TorchScript's (``torch.jit.load`` runs the archive's compiled code), never a
    weights-only checkpoint's or an ONNX graph's, which are data to this package."""
    return kind == "torchscript"


def is_training_checkpoint(path: Path) -> bool:
    """A ``torch.save`` archive (pickled data, no compiled code as TorchScript has)."""
    return _archive_holds(path, "data.pkl") and not _archive_holds(path, "constants.pkl")


def _archive_holds(path: Path | io.BytesIO, suffix: str) -> bool:
    """Whether ``path`` is a zip archive with a member named ``...suffix``: TorchScript
    archives hold compiled code (``constants.pkl``), ``torch.save`` files do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(suffix) for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


# -- exports -----------------------------------------------------------------------------


def export_metadata(
    labels: list[str],
    hyper_parameters: dict,
    operating_point: OperatingPoint | None = None,
    streaming: dict | None = None,
    window_s: float | None = None,
) -> dict[str, str]:
    """The text entries an export stores (``operating_point`` only when calibrated;
    ``streaming``, the frame and state sizes, only for a streaming export; ``window_s``
    when given, as every export by ``speech_gru.runtime.export`` gives it)."""
    meta = {
        "labels": json.dumps(labels),
        CLASSES: str(len(labels)),
        "sample_rate": "16000",
        "input": "waveform: float32 (batch, samples) at 16 kHz, mono, in [-1, 1]",
        "output": "probabilities: float32 (batch, labels)",
        VERSION: __version__,
        HYPER_PARAMETERS: json.dumps(hyper_parameters, default=str),
    }
    if window_s is not None:
        meta[WINDOW_S] = json.dumps(float(window_s))
        meta["input"] += (
            f"; the model scores {window_s:g} s windows ({round(window_s * 16000)} samples)"
        )
    if streaming is not None:
        meta["input"] = (
            "audio: float32 (batch, frame_hop) new samples at 16 kHz; samples (batch, n_fft "
            "- frame_hop), hidden (layers, batch, H), past (batch, window_frames - 1, labels): "
            "the state"
        )
        meta["output"] = (
            "probabilities (batch, labels) of the window ending at this frame, logits "
            "(batch, labels) of this frame, then the next samples, hidden and past"
        )
        meta["streaming"] = json.dumps(streaming)
    if operating_point is not None:
        meta[OPERATING_POINT] = json.dumps(operating_point.to_dict())
    return meta


def read_export_metadata(path: Path, meta: object) -> dict:
    """An export's metadata (TorchScript's ``metadata.json`` text, or ONNX's entries as a
    dict), checked to be a JSON object whose ``hyper_parameters`` is one too.

    Raises:
        ModelLoadError: one line naming what is malformed.
    """
    if isinstance(meta, str | bytes):
        meta = parse_json(meta or "{}")
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: metadata.json is not a JSON object")
    value = meta.get(HYPER_PARAMETERS, "{}")
    if not isinstance(parse_json(value) if isinstance(value, str) else value, dict):
        raise ModelLoadError(f"{path}: hyper_parameters metadata is not a JSON object")
    return meta


def export_labels(path: Path, text: str | bytes, classes: object) -> list[str]:
    """The labels an export records, checked against its ``classes`` entry.

    They are model-provided text: any strings, control characters included (whoever
    prints them escapes them).

    Raises:
        ModelLoadError: no ``classes`` entry (the file was exported before it was written,
            or by something else), or labels that are not a list of strings, one per class.
    """
    count = export_classes(path, classes)
    labels = parse_json(text)
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ModelLoadError(f"{path}: labels metadata is not a JSON list of strings")
    if len(labels) != count:
        raise ModelLoadError(
            f"{path}: labels metadata has {len(labels)} entries for {count} model outputs"
        )
    return labels


def export_classes(path: Path, value: object) -> int:
    """An export's ``classes`` entry: its number of outputs per clip.

    Raises:
        ModelLoadError: missing (the model is never run to count its outputs) or not a
            positive integer.
    """
    if value is None or value == "":
        raise ModelLoadError(
            f"{path}: no '{CLASSES}' metadata (the number of outputs); export the model "
            "again with this version of speech_gru"
        )
    count = parse_json(value) if isinstance(value, str | bytes) else value
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= 100_000:
        raise ModelLoadError(f"{path}: '{CLASSES}' metadata is not a positive count of outputs")
    return count


def streaming_spec(meta: Mapping) -> object:
    """A streaming export's ``streaming`` entry (frame and state sizes), parsed; None for
    a clip export."""
    value = meta.get("streaming")
    return parse_json(value) if isinstance(value, str) else value


def parse_json(text: str | bytes) -> object:
    """Parsed JSON, or None when ``text`` is not JSON (or nested too deep to parse)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


# -- the operating point -----------------------------------------------------------------


def read_operating_point(path: Path, value: object, labels: Sequence[str]) -> OperatingPoint | None:
    """The operating point a model file stores: a dict (checkpoints) or its JSON text
    (exports); None when there is none.

    Raises:
        ModelLoadError: a malformed entry, with a one-line reason.
    """
    if value is None:
        return None
    data = parse_json(value) if isinstance(value, str | bytes) else value
    if data is None:
        raise ModelLoadError(f"{path}: operating_point metadata is not a JSON object")
    try:
        return OperatingPoint.from_dict(data, labels)
    except ValueError as err:
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(f"{path}: operating_point metadata is malformed ({reason})") from None


@dataclass(frozen=True)
class OperatingPoint:
    """The detector settings a model is calibrated at, and how they were measured.

    Attributes:
        threshold: averaged keyword score that triggers an event (the one used for a
            keyword that ``thresholds`` does not list).
        average_s: span of the posterior moving average.
        refractory_s: time after an event during which no other event is reported.
        hop_s: time between scored windows when it was measured.
        thresholds: per-keyword thresholds (empty: ``threshold`` for every keyword).
        target_fa_per_hour: the false-alarm rate it was chosen for.
        negative_s: seconds of keyword-free audio it was measured on.
        false_alarms: events on that audio at this point.
        source: what that audio was (a dataset split, files).
        created: when it was measured (ISO 8601, UTC).
        hit_rate: share of keyword clips detected at this point, when measured (None if
            not).
    """

    threshold: float
    average_s: float
    refractory_s: float
    hop_s: float
    thresholds: Mapping[str, float] = field(default_factory=dict)
    target_fa_per_hour: float = 0.0
    negative_s: float = 0.0
    false_alarms: int = 0
    source: str = ""
    created: str = ""
    hit_rate: float | None = None

    @property
    def fa_per_hour(self) -> float:
        """Measured false alarms per hour of negative audio."""
        return self.false_alarms * 3600 / self.negative_s if self.negative_s else 0.0

    def detector_settings(self) -> dict:
        """Keyword arguments of ``DetectorConfig`` that this point sets."""
        return {
            "threshold": self.threshold,
            "average_s": self.average_s,
            "refractory_s": self.refractory_s,
            "thresholds": dict(self.thresholds),
        }

    def settings_text(self) -> str:
        """``threshold 0.83, average 0.5 s, refractory 1.5 s``."""
        return settings_text(self.threshold, self.thresholds, self.average_s, self.refractory_s)

    def measured_text(self) -> str:
        """``1 false alarm in 2.05 h of negative audio (0.488/h; target 1/h, hop 0.1 s)``,
        and the hit rate when measured."""
        alarms = f"{self.false_alarms} false alarm{'s' * (self.false_alarms != 1)}"
        text = (
            f"{alarms} in {duration_text(self.negative_s)} of negative audio "
            f"({self.fa_per_hour:.3g}/h; target {self.target_fa_per_hour:g}/h, "
            f"hop {self.hop_s:g} s)"
        )
        if self.hit_rate is not None:
            text += f", keyword clips detected {self.hit_rate:.1%}"
        return text

    def provenance_text(self) -> str:
        """``measured_text()``, the source of the negative audio and the date."""
        parts = [self.measured_text(), self.source, self.created]
        return "; ".join(part for part in parts if part)

    def to_dict(self) -> dict:
        """Plain floats, ints, strings and a dict of floats (checkpoints load it
        weights-only; exports store it as JSON)."""
        data = asdict(self)
        data["thresholds"] = dict(self.thresholds)
        return data

    @classmethod
    def from_dict(cls, data: object, labels: Sequence[str] | None = None) -> OperatingPoint:
        """Read and check a stored point.

        Args:
            data: what ``to_dict`` gave (unknown keys are ignored).
            labels: the model's labels; when given, every per-keyword threshold must
                name one of its keywords.

        Raises:
            ValueError: one line naming the first malformed entry.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"not a mapping but {type(data).__name__}")
        values: dict = {}
        for name, low, high, need in (
            ("threshold", 0.0, 1.0, True),
            ("average_s", 0.0, math.inf, True),
            ("refractory_s", 0.0, math.inf, True),
            ("hop_s", 0.0, math.inf, True),
            ("target_fa_per_hour", 0.0, math.inf, False),
            ("negative_s", 0.0, math.inf, False),
        ):
            if name not in data:
                if need:
                    raise ValueError(f"no {name}")
                continue
            values[name] = _number(data[name], name, low, high)
        if values["threshold"] == 0 or values["hop_s"] == 0:
            raise ValueError("threshold and hop_s must be greater than 0")
        thresholds = data.get("thresholds", {})
        if not isinstance(thresholds, Mapping):
            raise ValueError("thresholds is not a mapping of keyword to threshold")
        values["thresholds"] = {}
        for keyword, value in thresholds.items():
            if not isinstance(keyword, str) or (labels is not None and keyword not in labels):
                raise ValueError(f"threshold for {keyword!r}, which is not a label of the model")
            if not is_keyword(keyword):
                raise ValueError(f"threshold for {keyword!r}, which is not a keyword")
            values["thresholds"][keyword] = _number(value, f"thresholds[{keyword!r}]", 0.0, 1.0)
            if values["thresholds"][keyword] == 0:
                raise ValueError(f"thresholds[{keyword!r}] must be greater than 0")
        alarms = data.get("false_alarms", 0)
        if isinstance(alarms, bool) or not isinstance(alarms, int) or alarms < 0:
            raise ValueError(f"false_alarms must be a count, got {alarms!r}")
        values["false_alarms"] = alarms
        for name in ("source", "created"):
            if not isinstance(data.get(name, ""), str):
                raise ValueError(f"{name} must be a string")
            values[name] = data.get(name, "")
        if data.get("hit_rate") is not None:
            values["hit_rate"] = _number(data["hit_rate"], "hit_rate", 0.0, 1.0)
        return cls(**values)


def settings_text(
    threshold: float, thresholds: Mapping[str, float], average_s: float, refractory_s: float
) -> str:
    """Detector settings in words: ``threshold 0.83, average 0.5 s, refractory 1.5 s``
    (per-keyword thresholds as ``thresholds 0.61-0.92 per keyword``)."""
    if thresholds:
        low, high = min(thresholds.values()), max(thresholds.values())
        span = f"{low:.4g}" if low == high else f"{low:.4g}-{high:.4g}"
        text = f"thresholds {span} per keyword"
    else:
        text = f"threshold {threshold:.4g}"
    return f"{text}, average {average_s:g} s, refractory {refractory_s:g} s"


def duration_text(seconds: float) -> str:
    """``42.5 s``, ``12.3 min`` or ``2.05 h``."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _number(value: object, name: str, low: float, high: float) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)
