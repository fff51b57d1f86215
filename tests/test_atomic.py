"""core/atomic.py: a file is replaced whole or not at all, and a device or a pipe given as
the target is written in place, never replaced by a plain file."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from speech_gru.core.atomic import write_atomic


def test_a_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"old")
    write_atomic(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"old")

    def fail(f) -> None:  # noqa: ANN001
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(path, fail)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_a_pipe_is_written_into_not_replaced(tmp_path: Path) -> None:
    """``--out /dev/null`` (or a named pipe) gets the bytes; renaming a temporary file over
    it would have turned a device into a plain file."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomic(fifo, lambda f: f.write(b"figure"))
    reader.join(timeout=10)
    assert received == [b"figure"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_device_is_an_error_and_stays_a_device() -> None:
    with pytest.raises(OSError):
        write_atomic("/dev/full", lambda f: f.write(b"x" * 100_000))
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
