"""Download, verify and extract the Google Speech Commands archives.

Only the standard library talks to the network (``urllib``); ``rich`` draws the progress bar.
Downloads go to ``<dest>.part`` first, resume with an HTTP ``Range`` request when a partial file
is left over from an interrupted run, are checked against a SHA-256 digest, and are moved into
place atomically. Extraction is equally all-or-nothing: archives are unpacked into a temporary
sibling folder that is renamed into place only after a ``.complete`` marker has been written.

Typical use::

    from pathlib import Path
    from speech_gru.train.download import fetch

    root = fetch("v0.02", Path("~/.cache/speech_gru").expanduser())
    # root / "yes" / "0a7c2a8d_nohash_0.wav", root / "validation_list.txt", ...
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = [
    "ARCHIVES",
    "COMPLETE_MARKER",
    "Archive",
    "DownloadError",
    "download",
    "extract",
    "fetch",
]

COMPLETE_MARKER = ".complete"
"""Name of the file written into an extracted folder once extraction has fully succeeded."""

_USER_AGENT = "speech-gru-downloader/0.1 (+python-urllib)"
_BASE_URL = "http://download.tensorflow.org/data/"


@dataclass(frozen=True)
class Archive:
    """One downloadable archive.

    Attributes:
        url: Where to download it from.
        sha256: Expected SHA-256 of the archive (lower-case hex), or ``None`` if unknown, in which
            case the download is not verified.
        size: Expected size in bytes, or ``None`` if unknown (informational).
    """

    url: str
    sha256: str | None
    size: int | None


# Checksums and sizes, with their public sources:
# - v0.01: sha256 from torchaudio `torchaudio/datasets/speechcommands.py` (`_CHECKSUMS`) and from
#   huggingface/datasets `datasets/superb/dataset_infos.json` (config "ks", `download_checksums`),
#   which also gives num_bytes=1489096277 (the same Content-Length shows in a public wget log).
# - v0.02: sha256 and size from tensorflow/datasets
#   `tensorflow_datasets/url_checksums/speech_commands.txt`; the sha256 also matches torchaudio's
#   `_CHECKSUMS`.
# - test_v0.01: sha256 and size from huggingface/datasets `datasets/superb/dataset_infos.json`
#   (config "ks", `download_checksums`); the only source found for this archive.
# - test_v0.02: sha256 and size from tensorflow/datasets
#   `tensorflow_datasets/url_checksums/speech_commands.txt`.
ARCHIVES: dict[str, Archive] = {
    "v0.01": Archive(
        url=_BASE_URL + "speech_commands_v0.01.tar.gz",
        sha256="743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
        size=1_489_096_277,
    ),
    "v0.02": Archive(
        url=_BASE_URL + "speech_commands_v0.02.tar.gz",
        sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        size=2_428_923_189,
    ),
    "test_v0.01": Archive(
        url=_BASE_URL + "speech_commands_test_set_v0.01.tar.gz",
        sha256="baa084f6b62c91de660ff0588ae4dfc4e4d534aa99ac0e5f406cba75836cbd00",
        size=71_271_436,
    ),
    "test_v0.02": Archive(
        url=_BASE_URL + "speech_commands_test_set_v0.02.tar.gz",
        sha256="cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
        size=112_563_277,
    ),
}


class DownloadError(RuntimeError):
    """A download, verification or extraction failed.

    The message is a single line naming the URL or file concerned and the problem.
    """


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _hash_file(path: Path, hasher: hashlib._Hash, chunk_size: int = 1 << 20) -> None:
    """Feed the contents of ``path`` into ``hasher``."""
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            hasher.update(chunk)


def _sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    hasher = hashlib.sha256()
    _hash_file(path, hasher, chunk_size)
    return hasher.hexdigest()


def _describe(exc: BaseException) -> str:
    """One-line description of a network or archive exception."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        if isinstance(exc.reason, BaseException):
            return _describe(exc.reason)
        return " ".join(str(exc.reason).split())
    text = str(exc)
    name = type(exc).__name__
    return " ".join((f"{name}: {text}" if text else name).split())


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


def _content_range_start(value: str | None) -> int | None:
    """First byte position of a ``Content-Range: bytes a-b/n`` header, or None if unparsable."""
    if not value:
        return None
    match = _CONTENT_RANGE.match(value)
    return int(match.group(1)) if match else None


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@contextlib.contextmanager
def _progress_bar(
    enabled: bool, description: str, total: int | None, completed: int
) -> Iterator[Callable[[int], None]]:
    """Context manager yielding an ``advance(nbytes)`` callable backed by a rich progress bar."""
    if not enabled:
        yield lambda _n: None
        return
    progress = Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task(description, total=total, completed=completed)
        yield lambda n: progress.advance(task, n)


def _stream_to_part(
    response: http.client.HTTPResponse,
    url: str,
    part: Path,
    offset: int,
    *,
    progress: bool,
    chunk_size: int,
) -> str:
    """Append (offset > 0) or write (offset == 0) the response body to ``part``.

    Returns:
        The SHA-256 hex digest of the whole ``part`` file.

    Raises:
        DownloadError: When the connection fails or ends early; ``part`` is kept for resuming.
    """
    hasher = hashlib.sha256()
    if offset > 0:
        _hash_file(part, hasher, chunk_size)
    length = _content_length(response)
    total = offset + length if length is not None else None
    received = 0
    with (
        open(part, "ab" if offset > 0 else "wb") as fh,
        _progress_bar(progress, part.name.removesuffix(".part"), total, offset) as advance,
    ):
        try:
            while chunk := response.read(chunk_size):
                fh.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                advance(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"{url}: download interrupted after {offset + received} bytes "
                f"({_describe(exc)}); partial file kept at {part}, run again to resume"
            ) from exc
        finally:
            fh.flush()
            os.fsync(fh.fileno())
    if length is not None and received != length:
        raise DownloadError(
            f"{url}: connection closed after {offset + received} of {total} bytes; "
            f"partial file kept at {part}, run again to resume"
        )
    return hasher.hexdigest()


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    *,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download and verifying its checksum.

    Data is written to ``<dest>.part``. If that file exists from an interrupted run, the download
    resumes with an HTTP ``Range: bytes=N-`` request; a server that answers ``200`` instead of
    ``206`` is handled by restarting from zero, and ``416`` (range not satisfiable) is taken to
    mean the partial file is already complete. The finished file is verified and then moved to
    ``dest`` with :func:`os.replace`, so ``dest`` never holds a partial or corrupt file.

    If ``dest`` already exists and matches ``sha256`` (or ``sha256`` is None), it is returned at
    once without touching the network; if it does not match, it is downloaded again.

    Args:
        url: HTTP(S) URL to download.
        dest: Final path of the downloaded file. Parent folders are created.
        sha256: Expected SHA-256 hex digest, or None to skip verification.
        progress: Show a rich progress bar (bytes, speed, ETA) on stderr.
        chunk_size: Bytes read from the network per iteration.
        timeout: Socket timeout in seconds for connecting and for each read.

    Returns:
        ``dest``.

    Raises:
        DownloadError: On network or HTTP errors (the partial file is kept so that a rerun
            resumes) or on a checksum mismatch (the partial file is deleted).
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file() and (expected is None or _sha256_of(dest, chunk_size) == expected):
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    offset = part.stat().st_size if part.is_file() else 0
    digest: str | None = None

    for _attempt in range(2):
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset > 0:
                break  # The partial file already holds every byte; verify it below.
            raise DownloadError(f"{url}: server answered HTTP {exc.code} {exc.reason}") from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DownloadError(f"{url}: cannot connect ({_describe(exc)})") from exc

        with response:
            if offset > 0 and response.status == 206:
                if _content_range_start(response.headers.get("Content-Range")) != offset:
                    offset = 0  # The server resumed from the wrong place: start over cleanly.
                    continue
            elif offset > 0:
                offset = 0  # Range ignored (200): the body is the whole file, restart from zero.
            digest = _stream_to_part(
                response, url, part, offset, progress=progress, chunk_size=chunk_size
            )
        break
    else:  # pragma: no cover - needs a server that answers a Range-less request with 206
        raise DownloadError(f"{url}: server keeps answering with an unexpected Content-Range")

    if expected is not None:
        if digest is None:
            digest = _sha256_of(part, chunk_size)
        if digest != expected:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: SHA-256 mismatch for {dest.name}: expected {expected}, got {digest} "
                "(corrupt download deleted)"
            )
    os.replace(part, dest)
    return dest


def _is_within(root: Path, target: Path) -> bool:
    try:
        target.relative_to(root)
    except ValueError:
        return False
    return True


def _checked_members(tar: tarfile.TarFile, root: Path, archive: Path) -> Iterator[tarfile.TarInfo]:
    """Yield the members of ``tar`` one by one, refusing any that would land outside ``root``.

    Iterating lazily lets ``extractall`` stream a ``.tar.gz`` in a single decompression pass.
    """
    root = root.resolve()
    for member in tar:
        name = member.name
        target = (root / name).resolve()
        problem = None
        if os.path.isabs(name) or name.startswith(("/", "\\")):
            problem = "has an absolute path"
        elif not _is_within(root, target):
            problem = "would be written outside the destination"
        elif member.issym():
            link_target = (target.parent / member.linkname).resolve()
            if os.path.isabs(member.linkname) or not _is_within(root, link_target):
                problem = f"is a symlink pointing outside the destination ({member.linkname})"
        elif member.islnk():
            link_target = (root / member.linkname).resolve()
            if os.path.isabs(member.linkname) or not _is_within(root, link_target):
                problem = f"is a hard link pointing outside the destination ({member.linkname})"
        elif member.ischr() or member.isblk() or member.isfifo():
            problem = "is a device or FIFO"
        if problem:
            raise DownloadError(f"{archive}: refusing unsafe member {name!r}: it {problem}")
        yield member


def extract(archive: Path, dest_dir: Path) -> Path:
    """Safely extract a ``.tar.gz`` archive into ``dest_dir``.

    The archive is unpacked into a temporary sibling folder, a ``.complete`` marker is written
    into it, and only then is it renamed to ``dest_dir``. A folder that has the marker is
    therefore fully extracted, and calling this again is a no-op. Members with absolute paths,
    ``..`` components, or links leading outside the destination are refused (and Python's
    ``tarfile`` ``"data"`` filter is applied where available).

    Args:
        archive: Path to the ``.tar.gz`` (any compression ``tarfile`` can auto-detect works).
        dest_dir: Folder to create with the archive's contents.

    Returns:
        ``dest_dir``.

    Raises:
        DownloadError: If the archive is corrupt or has an unsafe member, or if ``dest_dir``
            exists, is not empty and lacks the completion marker (it is not ours to delete).
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    if (dest_dir / COMPLETE_MARKER).is_file():
        return dest_dir
    if dest_dir.exists():
        if dest_dir.is_dir() and not any(dest_dir.iterdir()):
            dest_dir.rmdir()
        else:
            raise DownloadError(
                f"{dest_dir}: exists but has no {COMPLETE_MARKER} marker; "
                "remove it and run again to extract a fresh copy"
            )

    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.extracting-", dir=dest_dir.parent))
    try:
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, members=_checked_members(tar, tmp, archive), **extra)
        except DownloadError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DownloadError(f"{archive}: cannot extract ({_describe(exc)})") from exc
        (tmp / COMPLETE_MARKER).write_text(f"extracted from {archive.name}\n", encoding="utf-8")
        try:
            os.rename(tmp, dest_dir)
        except OSError:
            if (dest_dir / COMPLETE_MARKER).is_file():
                return dest_dir  # Another process finished the same extraction first.
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


def fetch(
    name: str,
    cache_dir: Path,
    *,
    progress: bool = True,
    archives: Mapping[str, Archive] = ARCHIVES,
) -> Path:
    """Download (if needed) and extract one of the Speech Commands archives.

    The archive is saved under ``cache_dir/downloads/`` and extracted to ``cache_dir/<name>/``.
    When that folder is already completely extracted, nothing is downloaded or verified.

    Args:
        name: Key into ``archives``, e.g. ``"v0.02"`` or ``"test_v0.02"``.
        cache_dir: Root folder of the cache.
        progress: Show a progress bar while downloading.
        archives: Table of available archives (tests substitute local URLs).

    Returns:
        The folder the archive was extracted into.

    Raises:
        ValueError: If ``name`` is not in ``archives``.
        DownloadError: If downloading, verifying or extracting fails.
    """
    try:
        entry = archives[name]
    except KeyError:
        known = ", ".join(sorted(archives))
        raise ValueError(f"unknown archive {name!r}; choose one of: {known}") from None
    cache_dir = Path(cache_dir)
    out_dir = cache_dir / name
    if (out_dir / COMPLETE_MARKER).is_file():
        return out_dir
    filename = Path(urllib.parse.urlsplit(entry.url).path).name or f"{name}.tar.gz"
    archive_path = download(
        entry.url, cache_dir / "downloads" / filename, entry.sha256, progress=progress
    )
    return extract(archive_path, out_dir)
