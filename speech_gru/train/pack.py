"""Packed int16 clip caches: every clip of a split in one memory-mapped array.

Reading ~85,000 WAV files per epoch starves a GPU; reading rows of one contiguous array
does not. ``write_pack`` decodes a split once (resampled, mixed down, padded or trimmed
to the model's window, stored as 16-bit integers) into ``<split>.npy`` with a
``<split>.json`` index; ``open_pack`` maps it back, and returns nothing when the split's
files changed since (a different file list, size or modification time), so a stale pack
is never used.

Each clip length has packs of its own: one-second clips (``CLIP_SAMPLES``) in
``<split>.npy``, any other length N in ``<split>.N.npy`` (``pack_name``), and the index
records the length, so a model of one window never reads clips cut to another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from speech_gru.core.audio import AudioError, load_audio, loudest_window
from speech_gru.train.corpus import CLIP_SAMPLES

log = logging.getLogger(__name__)

PACK_VERSION = 1


def default_pack_root() -> Path:
    """``$XDG_CACHE_HOME/speech_gru/packs`` (``~/.cache/speech_gru/packs`` by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "speech_gru" / "packs"


def pack_dir_for(data_root: Path, pack_root: Path | None = None) -> Path:
    """The pack folder of a dataset folder: one per resolved path."""
    resolved = str(Path(data_root).resolve())
    tag = hashlib.sha1(resolved.encode()).hexdigest()[:10]
    return (pack_root or default_pack_root()) / f"{Path(resolved).name}-{tag}"


def fingerprint(files: Sequence[Path]) -> str:
    """Identity of a list of files: their paths, sizes and modification times."""
    digest = hashlib.sha1()
    for path in files:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def pack_name(split: str, samples: int = CLIP_SAMPLES) -> str:
    """The file stem of a split's pack of ``samples``-sample clips: ``training`` for one
    second (as packs always were), ``training.24000`` for 1.5 s."""
    return split if samples == CLIP_SAMPLES else f"{split}.{samples}"


class PackedSplit:
    """A split's clips as rows of a memory-mapped int16 array.

    The array is opened lazily in each process, so loader workers share the page cache
    instead of copies.

    Attributes:
        unreadable: resolved paths of the split's files that could not be decoded.
        samples: samples per clip (the row length).
    """

    def __init__(
        self,
        array_path: Path,
        files: Sequence[str],
        unreadable: Sequence[str],
        samples: int = CLIP_SAMPLES,
    ) -> None:
        self.array_path = array_path
        self.row_of = {name: i for i, name in enumerate(files)}
        self.unreadable = set(unreadable)
        self.samples = samples
        self._rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.row_of)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rows": None}

    def get(self, path: Path) -> np.ndarray | None:
        """The clip of ``path`` as float32 in [-1, 1), or None if it is not packed."""
        row = self.row_of.get(str(Path(path).resolve()))
        if row is None:
            return None
        if self._rows is None:
            self._rows = np.load(self.array_path, mmap_mode="r")
        return self._rows[row].astype(np.float32) / 32768.0


def write_pack(
    pack_dir: Path,
    split: str,
    files: Sequence[Path],
    progress: Callable[[int], None] | None = None,
    samples: int = CLIP_SAMPLES,
) -> tuple[Path, list[dict[str, str]]]:
    """Decode ``files``, each cut or padded to ``samples``, into
    ``pack_dir/<pack_name>.npy`` and its index, atomically.

    Files that cannot be read are left out and listed in the index (``unreadable``).

    Returns:
        The array's path and the unreadable files (``{"path", "error"}`` each).
    """
    pack_dir.mkdir(parents=True, exist_ok=True)
    name = pack_name(split, samples)
    final, index_path = pack_dir / f"{name}.npy", pack_dir / f"{name}.json"
    tmp = pack_dir / f".{name}.{os.getpid()}.npy"
    rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(len(files), samples))
    kept: list[str] = []
    errors: list[dict[str, str]] = []
    for path in files:
        try:
            wave = loudest_window(load_audio(path), samples)
        except AudioError as err:
            errors.append({"path": str(Path(path).resolve()), "error": str(err)})
        else:
            rows[len(kept)] = np.clip(np.round(wave * 32768.0), -32768, 32767)
            kept.append(str(Path(path).resolve()))
        if progress is not None:
            progress(1)
    rows.flush()
    del rows
    if len(kept) < len(files):  # shrink to the readable rows
        full = np.load(tmp, mmap_mode="r")
        shrunk = tmp.with_name(f".{name}.{os.getpid()}.kept.npy")
        np.save(shrunk, full[: len(kept)])
        del full
        tmp.unlink()
        tmp = shrunk
    index = {
        "version": PACK_VERSION,
        "split": split,
        "samples": samples,
        "fingerprint": fingerprint(files),
        "files": kept,
        "unreadable": errors,
    }
    os.replace(tmp, final)
    tmp_index = index_path.with_suffix(".json.tmp")
    tmp_index.write_text(json.dumps(index))
    os.replace(tmp_index, index_path)  # the index last: a pack without it is never used
    return final, errors


def read_index(pack_dir: Path, split: str, samples: int = CLIP_SAMPLES) -> dict | None:
    """The index of a split's pack of ``samples``-sample clips; None when there is none
    (or one of another format version or clip length)."""
    name = pack_name(split, samples)
    path = pack_dir / f"{name}.json"
    if not path.is_file() or not (pack_dir / f"{name}.npy").is_file():
        return None
    index = json.loads(path.read_text())
    if index.get("version") != PACK_VERSION:
        return None
    # Indexes written before the length was recorded are all of one-second clips.
    return index if index.get("samples", CLIP_SAMPLES) == samples else None


def open_pack(
    pack_dir: Path, split: str, files: Sequence[Path], samples: int = CLIP_SAMPLES
) -> PackedSplit | None:
    """The packed split of ``samples``-sample clips, if it exists and was made from
    exactly these files as they are (a pack of another clip length is never opened)."""
    index = read_index(pack_dir, split, samples)
    if index is None:
        return None
    if index["fingerprint"] != fingerprint(files):
        log.warning(
            "%s: pack of %s is stale (the files changed); reading WAV files", pack_dir, split
        )
        return None
    unreadable = [entry["path"] for entry in index["unreadable"]]
    array_path = pack_dir / f"{pack_name(split, samples)}.npy"
    return PackedSplit(array_path, index["files"], unreadable, samples)
