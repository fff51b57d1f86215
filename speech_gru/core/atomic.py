"""Files written whole or not at all.

``write_atomic`` writes to a fresh temporary file in the target's folder, flushes it to
disk and renames it over the target, an atomic step on POSIX file systems: a full disk, a
crash or an interrupt leaves the previous file (or none), never a partial one, and the
temporary file is removed on any failure. A target that exists and is not a regular file
(``/dev/null``, ``/dev/full``, a named pipe) is written in place instead: replacing it would
turn a device into a plain file. No Lightning or torch import, so that exports, figures and
training checkpoints can share it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
"""Ending of the temporary files (``.NAME.XXXXXXXX.tmp``), so a lock holder can find those
that a killed writer left behind."""


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` with what ``write`` writes, atomically.

    Args:
        path: the file to write; its folder must exist.
        write: called once with a binary file open for writing.

    Raises:
        OSError: the data could not be written (a regular ``path`` is then unchanged); any
            exception of ``write`` passes through the same way.
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, "wb") as f:  # a device or a pipe: never renamed over
            write(f)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 -> what open() gives
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask
