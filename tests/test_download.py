"""Tests for speech_gru.train.download against a local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import random
import re
import shutil
import socket
import struct
import tarfile
import threading
import urllib.parse
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import pytest

from speech_gru.train.download import (
    ARCHIVES,
    COMPLETE_MARKER,
    Archive,
    DownloadError,
    download,
    extract,
    fetch,
)

ARCHIVE_NAME = "speech_commands_v0.02.tar.gz"

# --------------------------------------------------------------------------------------------
# fixtures: a tiny Speech Commands archive and an HTTP server with Range support
# --------------------------------------------------------------------------------------------


class Request(NamedTuple):
    path: str
    range: str | None
    status: int


@dataclass
class Server:
    """State shared between the test and the request handler."""

    root: Path
    base_url: str = ""
    bytes_served: int = 0
    requests: list[Request] = field(default_factory=list)
    honor_range: bool = True
    truncate_body_at: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


def _make_handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _record(self, status: int, nbytes: int = 0) -> None:
            with state.lock:
                state.requests.append(Request(self.path, self.headers.get("Range"), status))
                state.bytes_served += nbytes

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            path = state.root / rel
            if not rel or not path.is_file():
                self._record(404)
                self.send_error(404)
                return
            data = path.read_bytes()
            size = len(data)
            start, end, status = 0, size, 200
            range_header = self.headers.get("Range")
            if range_header and state.honor_range:
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
                if match:
                    start = int(match[1])
                    end = min(size, int(match[2]) + 1) if match[2] else size
                    if start >= size:
                        self._record(416)
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
            body = data[start:end]
            length = len(body)
            if state.truncate_body_at is not None:
                body = body[: state.truncate_body_at]  # Then the connection is closed early.
            # Account before sending: the client may return before this thread runs again.
            self._record(status, len(body))
            self.send_response(status)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(length))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """An HTTP server on 127.0.0.1 serving files from a temp folder, with Range support."""
    root = tmp_path / "served"
    root.mkdir()
    state = Server(root=root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    host, port = httpd.server_address[:2]
    state.base_url = f"http://{host}:{port}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _wav_bytes(seconds: float, seed: int, sample_rate: int = 16000) -> bytes:
    rng = random.Random(seed)
    n = int(seconds * sample_rate)
    frames = struct.pack(f"<{n}h", *(rng.randint(-3000, 3000) for _ in range(n)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(frames)
    return buf.getvalue()


@dataclass
class SpeechArchive:
    path: Path
    url: str
    sha256: str
    data: bytes
    files: dict[str, bytes]

    def table(self, name: str = "v0.02", sha256: str | None = None) -> dict[str, Archive]:
        return {name: Archive(self.url, sha256 or self.sha256, len(self.data))}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def speech_archive(server: Server) -> SpeechArchive:
    """A small tar.gz in the Speech Commands layout, served by ``server``."""
    files = {
        "yes/abcd1234_nohash_0.wav": _wav_bytes(0.5, seed=1),
        "yes/abcd1234_nohash_1.wav": _wav_bytes(0.5, seed=2),
        "no/ef567890_nohash_0.wav": _wav_bytes(0.5, seed=3),
        "_background_noise_/white.wav": _wav_bytes(2.0, seed=4),
        "validation_list.txt": b"yes/abcd1234_nohash_1.wav\n",
        "testing_list.txt": b"no/ef567890_nohash_0.wav\n",
        "LICENSE": b"CC BY 4.0\n",
    }
    path = server.root / ARCHIVE_NAME
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            _add_bytes(tar, name, data)
    data = path.read_bytes()
    return SpeechArchive(
        path=path,
        url=server.url(ARCHIVE_NAME),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        files=files,
    )


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_fetch_downloads_verifies_and_extracts(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"

    out = fetch("v0.02", cache, progress=False, archives=speech_archive.table())

    assert out == cache / "v0.02"
    for rel, data in speech_archive.files.items():
        assert (out / rel).read_bytes() == data
    assert (out / COMPLETE_MARKER).is_file()
    downloaded = cache / "downloads" / ARCHIVE_NAME
    assert downloaded.read_bytes() == speech_archive.data
    assert not (cache / "downloads" / (ARCHIVE_NAME + ".part")).exists()
    assert sorted(p.name for p in cache.iterdir()) == ["downloads", "v0.02"]  # no temp leftovers
    assert server.bytes_served == len(speech_archive.data)


def test_download_resumes_partial_file_with_range_request(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    dest = tmp_path / "dl" / ARCHIVE_NAME
    dest.parent.mkdir()
    half = len(speech_archive.data) // 2
    (dest.parent / (ARCHIVE_NAME + ".part")).write_bytes(speech_archive.data[:half])

    result = download(
        speech_archive.url, dest, speech_archive.sha256, progress=True, chunk_size=4096
    )

    assert result == dest
    assert dest.read_bytes() == speech_archive.data
    assert server.bytes_served == len(speech_archive.data) - half
    assert server.requests == [Request(f"/{ARCHIVE_NAME}", f"bytes={half}-", 206)]
    assert not (dest.parent / (ARCHIVE_NAME + ".part")).exists()


def test_download_restarts_when_server_ignores_range(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    server.honor_range = False
    dest = tmp_path / ARCHIVE_NAME
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(b"\xff" * 100)  # junk that must be dropped

    download(speech_archive.url, dest, speech_archive.sha256, progress=False)

    assert dest.read_bytes() == speech_archive.data
    assert server.requests[-1].status == 200
    assert server.bytes_served == len(speech_archive.data)


def test_download_accepts_complete_part_file_on_416(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    dest = tmp_path / ARCHIVE_NAME
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(speech_archive.data)

    download(speech_archive.url, dest, speech_archive.sha256, progress=False)

    assert dest.read_bytes() == speech_archive.data
    assert [r.status for r in server.requests] == [416]
    assert server.bytes_served == 0


def test_interrupted_download_keeps_part_and_rerun_resumes(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    dest = tmp_path / ARCHIVE_NAME
    part = tmp_path / (ARCHIVE_NAME + ".part")
    server.truncate_body_at = 1000

    with pytest.raises(DownloadError, match=re.escape(speech_archive.url)):
        download(speech_archive.url, dest, speech_archive.sha256, progress=False)
    assert not dest.exists()
    assert part.read_bytes() == speech_archive.data[:1000]

    server.truncate_body_at = None
    served_before = server.bytes_served
    download(speech_archive.url, dest, speech_archive.sha256, progress=False)

    assert dest.read_bytes() == speech_archive.data
    assert server.bytes_served - served_before == len(speech_archive.data) - 1000
    assert server.requests[-1].range == "bytes=1000-"


def test_checksum_mismatch_raises_and_leaves_no_file(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    dest = tmp_path / ARCHIVE_NAME
    wrong = "0" * 64

    with pytest.raises(DownloadError) as excinfo:
        download(speech_archive.url, dest, wrong, progress=False)

    message = str(excinfo.value)
    assert speech_archive.url in message or ARCHIVE_NAME in message
    assert wrong in message and speech_archive.sha256 in message
    assert "\n" not in message
    assert not dest.exists()
    assert not (tmp_path / (ARCHIVE_NAME + ".part")).exists()

    cache = tmp_path / "cache"
    with pytest.raises(DownloadError):
        fetch("v0.02", cache, progress=False, archives=speech_archive.table(sha256=wrong))
    assert not (cache / "v0.02").exists()
    assert not (cache / "downloads" / ARCHIVE_NAME).exists()


def test_second_fetch_does_not_touch_the_server(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    table = speech_archive.table()
    fetch("v0.02", cache, progress=False, archives=table)
    served, n_requests = server.bytes_served, len(server.requests)

    # Everything already in place.
    assert fetch("v0.02", cache, progress=False, archives=table) == cache / "v0.02"
    # Extracted folder gone, verified archive still there: re-extract without the network.
    shutil.rmtree(cache / "v0.02")
    out = fetch("v0.02", cache, progress=False, archives=table)

    assert (out / "yes/abcd1234_nohash_0.wav").read_bytes() == speech_archive.files[
        "yes/abcd1234_nohash_0.wav"
    ]
    assert server.bytes_served == served
    assert len(server.requests) == n_requests


def test_existing_corrupt_download_is_replaced(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    dest = tmp_path / ARCHIVE_NAME
    dest.write_bytes(b"not the archive")

    download(speech_archive.url, dest, speech_archive.sha256, progress=False)

    assert dest.read_bytes() == speech_archive.data
    assert server.bytes_served == len(speech_archive.data)


def test_unreachable_url_raises_download_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/{ARCHIVE_NAME}"
    dest = tmp_path / ARCHIVE_NAME

    with pytest.raises(DownloadError) as excinfo:
        download(url, dest, "0" * 64, progress=False, timeout=5)

    assert type(excinfo.value) is DownloadError
    assert url in str(excinfo.value)
    assert not dest.exists()


def test_http_error_raises_download_error(server: Server, tmp_path: Path) -> None:
    url = server.url("missing.tar.gz")

    with pytest.raises(DownloadError, match=r"HTTP 404") as excinfo:
        download(url, tmp_path / "missing.tar.gz", progress=False)

    assert url in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "kind", "linkname"),
    [
        ("../evil.txt", tarfile.REGTYPE, ""),
        ("yes/../../evil.txt", tarfile.REGTYPE, ""),
        ("/tmp/speech_gru_evil.txt", tarfile.REGTYPE, ""),
        ("link", tarfile.SYMTYPE, "../evil.txt"),
    ],
)
def test_extract_refuses_members_escaping_destination(
    tmp_path: Path, name: str, kind: bytes, linkname: str
) -> None:
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add_bytes(tar, "yes/ok.wav", b"fine")
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        data = b"" if kind == tarfile.SYMTYPE else b"pwned"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "out"

    with pytest.raises(DownloadError, match="unsafe member") as excinfo:
        extract(archive, dest)

    assert str(archive) in str(excinfo.value)
    assert not (tmp_path / "evil.txt").exists()
    assert not (work / "evil.txt").exists()
    assert not dest.exists()
    assert list(work.iterdir()) == []  # temporary folder cleaned up


def test_extract_is_idempotent_and_never_half_done(
    speech_archive: SpeechArchive, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    assert extract(speech_archive.path, dest) == dest
    sentinel = dest / "yes" / "abcd1234_nohash_0.wav"
    sentinel.write_bytes(b"edited")
    assert extract(speech_archive.path, dest) == dest
    assert sentinel.read_bytes() == b"edited"  # second call was a no-op

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(speech_archive.data[: len(speech_archive.data) // 2])
    other = tmp_path / "other"
    with pytest.raises(DownloadError, match=re.escape(str(truncated))):
        extract(truncated, other)
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "served", "truncated.tar.gz"]


def test_archives_table_lists_the_official_archives() -> None:
    assert set(ARCHIVES) == {"v0.01", "v0.02", "test_v0.01", "test_v0.02"}
    for name, entry in ARCHIVES.items():
        assert re.fullmatch(
            r"https?://download\.tensorflow\.org/data/speech_commands_[a-z_]*v0\.0[12]\.tar\.gz",
            entry.url,
        ), entry.url
        assert entry.url.endswith(name.removeprefix("test_") + ".tar.gz")
        assert ("test_set" in entry.url) == name.startswith("test_")
        assert entry.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.size is None or entry.size > 0
    assert len({entry.sha256 for entry in ARCHIVES.values()}) == 4


def test_fetch_unknown_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="v0.02"):
        fetch("v9", tmp_path, progress=False)


def test_datamodule_downloads_and_splits_the_official_archive(
    server: Server, speech_archive: SpeechArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SpeechCommandsDataModule(download=True)` fetches, verifies, extracts and splits."""
    from speech_gru.train import download
    from speech_gru.train.data import SpeechCommandsDataModule

    monkeypatch.setitem(download.ARCHIVES, "v0.02", speech_archive.table()["v0.02"])
    dm = SpeechCommandsDataModule(root=str(tmp_path / "cache"), labels="v2_35", num_workers=0)
    dm.prepare_data()
    dm.setup()
    assert server.bytes_served == len(speech_archive.data)
    root = tmp_path / "cache" / "v0.02"
    names = {
        split: sorted(c.path.relative_to(root).as_posix() for c in ds.clips)
        for split, ds in dm.datasets.items()
    }
    assert names == {
        "training": ["yes/abcd1234_nohash_0.wav"],
        "validation": ["yes/abcd1234_nohash_1.wav"],
        "testing": ["no/ef567890_nohash_0.wav"],
    }
    dm.prepare_data()  # a second run finds everything in place
    assert server.bytes_served == len(speech_archive.data)
