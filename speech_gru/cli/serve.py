"""``speech-gru serve``: a local web page that listens to the browser's microphone.

The page (plain HTML, JavaScript and CSS in ``speech_gru/cli/web``, no build step) captures
the microphone with ``getUserMedia``, resamples it to 16 kHz in an AudioWorklet and sends
PCM frames over a WebSocket. Each connection gets its own ``StreamingDetector``
(``factory.new_detector``, at the settings and operating point of ``speech-gru stream``).
The page draws each keyword's averaged score against the threshold,
lists the events, sets the threshold, and uploads files to ``Transcriber`` (``speech-gru
transcribe``).

Every client's audio is scored by one ``serve_turns.Hub``: each turn takes the messages of
every client that waited since the last one and runs the model once for all of them in a
model thread (windows of a bidirectional model; frames of a forward model, whose state
each client carries), so a busy server runs fewer, larger model calls, and the event loop
never waits for the model.

WebSocket protocol (``/ws``), JSON text unless said otherwise:

* client -> server ``{"type": "start", "format": "int16" | "float32", "sample_rate":
  16000}``: (re)starts the stream at time zero; answered by ``ready`` (labels, keywords,
  thresholds, hop).
* client -> server, binary: little-endian mono PCM in the started format, at most
  ``max_message_bytes`` a message.
* client -> server ``{"type": "threshold", "value": 0.6}``: one threshold for every
  keyword from now on (as ``--threshold`` does); answered by ``threshold``.
* server -> client ``{"type": "scores", "times": [s, ...], "scores": [[k0, k1, ...],
  ...]}``: each new window's end time and its averaged keyword scores, in ``ready``'s
  keyword order; ``{"type": "event", "label", "score", "time_s", "start_s", "end_s"}``.
* server -> client ``{"type": "error", "message": "..."}``: one line about a message that
  was refused (not JSON, unknown type, wrong sample format, too large); the message is
  dropped and the connection stays open.

A stream is held to real time (``guard.RealTime``: a client that sends faster has its
messages read no faster than real time plus a small burst, and a client still further
ahead, a flood, is closed with a one-line reason), and one that sends no audio
for ``idle_timeout_s`` is closed (code 1008, the reason in one line), so neither a flood
nor idle sockets hold the server from other clients.

Uploads: ``POST /api/transcribe`` (multipart field ``file``, optional ``threshold``) gives
``{"file", "audio_s", "results": [...]}``, or a 4xx status with ``{"error": "one line"}``.
An upload is admitted by its duration, read from the header before anything is decoded
(413 over ``max_upload_seconds``); it runs in its own small pool (``upload_workers``
threads at a lower priority, ``upload_queue`` waiting, more are 503), never in the
threads that score live streams; it stops when its client hangs up or the server stops,
and its temporary folder goes on every way out.

Every request and WebSocket passes ``guard.HostGuard`` first: the ``Host`` header must be
an allowed host and an ``Origin`` the page's own (scheme, host and port).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from speech_gru.cli.guard import (
    BURST_S,
    IDLE_TIMEOUT_S,
    MAX_UPLOAD_SECONDS,
    MAX_WAIT_S,
    HostGuard,
    RealTime,
    host_name,
)
from speech_gru.cli.serve_turns import Hub, Stream
from speech_gru.core.audio import SAMPLE_RATE, AudioError, info, printable
from speech_gru.core.labels import is_keyword
from speech_gru.runtime.classifier import Classifier
from speech_gru.runtime.detector import DetectorConfig, StreamingDetector
from speech_gru.runtime.factory import file_config
from speech_gru.runtime.transcribe import ClipResult, EventResult, Failure, Transcriber

WEB = Path(__file__).resolve().parent / "web"
"""The page: index.html, app.js, worklet.js, style.css."""

FORMATS = {"int16": np.dtype("<i2"), "float32": np.dtype("<f4")}
"""Sample formats a client may send, little-endian."""

MAX_MESSAGE_BYTES = 64 * 1024
"""Largest WebSocket message taken (1 s of float32 audio is 64000 bytes)."""

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
"""Largest file ``/api/transcribe`` takes."""

UNKNOWN_FRAMES = 2**62
"""A header that gives at least this many frames does not know the length (libsndfile's
answer for a FLAC without a sample count): such a file is admitted, and stopped once it
runs past the limit, as a long recording is streamed in blocks."""

UPLOAD_PREFIX = "speech-gru-upload-"
"""Temporary folders of uploads are named so."""


class ServeError(Exception):
    """The server cannot start (e.g. the port is taken); ``str()`` is one line."""


class MessageError(Exception):
    """A client message that is refused; ``str()`` is the one line sent back."""


@dataclass
class Settings:
    """What the app serves.

    Attributes:
        classifier: the model.
        config: live detector settings (``batch_windows`` 1), as ``stream`` builds them.
        workers: threads running the model (``Hub``); each client's audio is scored in
            order, different clients' in one batch per turn.
        max_message_bytes: largest WebSocket message taken.
        max_upload_bytes: largest uploaded file taken.
        max_clients: WebSocket clients served at once; more are refused.
        origin: one line saying where the detector settings come from (the page shows it).
        max_upload_seconds: longest audio an upload may hold, by its header.
        upload_workers: uploads transcribed at once, in their own threads.
        upload_queue: uploads that may wait for a worker; more are refused (503).
        idle_timeout_s: a stream that sends no audio for this long is closed.
        burst_s: audio a stream may send ahead of real time before it is slowed (at
            least one largest message).
        max_wait_s: longest a stream is held back for real time, message after message;
            a client held back longer is flooding and is closed (code 1008).
        allowed_hosts: host names besides the loopback ones that ``Host`` may name.
    """

    classifier: Classifier
    config: DetectorConfig
    workers: int = 1
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_clients: int = 64
    origin: str = ""
    max_upload_seconds: float = MAX_UPLOAD_SECONDS
    upload_workers: int = 1
    upload_queue: int = 4
    idle_timeout_s: float = IDLE_TIMEOUT_S
    burst_s: float = BURST_S
    max_wait_s: float = MAX_WAIT_S
    allowed_hosts: tuple[str, ...] = ()


def create_app(settings: Settings) -> Starlette:
    """The Starlette app: the page, its static files, ``/api/info``, ``/ws`` and
    ``/api/transcribe``, behind ``HostGuard``. ``app.state.clients`` counts open WebSocket
    streams; ``app.state.uploads`` holds the uploads admitted and not yet finished."""
    classifier = settings.classifier
    hub = Hub(classifier, settings.workers)  # live streams, in turns
    upload_pool = ThreadPoolExecutor(
        max(1, settings.upload_workers),
        thread_name_prefix="speech-gru-upload",
        initializer=_lower_priority,
    )

    keywords = [label for label in classifier.labels if is_keyword(label)]
    columns = np.array([i for i, label in enumerate(classifier.labels) if is_keyword(label)])

    def info_of(config: DetectorConfig) -> dict:
        return {
            "model": Path(classifier.source).name,
            "labels": classifier.labels,
            "keywords": keywords,
            "threshold": config.threshold,
            "thresholds": {k: config.thresholds.get(k, config.threshold) for k in keywords},
            "hop_s": config.hop_s,
            "average_s": config.average_s,
            "refractory_s": config.refractory_s,
            "sample_rate": config.sample_rate,
            "formats": list(FORMATS),
            "max_message_bytes": settings.max_message_bytes,
            "max_upload_seconds": settings.max_upload_seconds,
            "origin": settings.origin,
        }

    async def index(request: Request) -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    async def api_info(request: Request) -> JSONResponse:
        return JSONResponse(info_of(settings.config))

    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        if app.state.clients >= settings.max_clients:
            await _send_error(websocket, f"server busy: {settings.max_clients} streams open")
            await websocket.close(code=1013)  # try again later
            return
        app.state.clients += 1
        loop = asyncio.get_running_loop()
        client = _Client(None, None)
        rate = settings.config.sample_rate
        largest = settings.max_message_bytes // min(f.itemsize for f in FORMATS.values())
        allowance = RealTime(rate, max(settings.burst_s * rate, largest), loop.time())
        last_audio = loop.time()
        try:
            while True:
                wait = settings.idle_timeout_s - (loop.time() - last_audio)
                try:
                    message = await asyncio.wait_for(websocket.receive(), max(wait, 0.0))
                except TimeoutError:
                    reason = f"no audio for {settings.idle_timeout_s:g} s: stream closed"
                    await _send_error(websocket, reason)
                    await websocket.close(code=1008, reason=reason)
                    break
                if message["type"] == "websocket.disconnect":
                    break
                try:
                    if message.get("bytes") is not None:
                        chunk = client.samples(message["bytes"], settings.max_message_bytes)
                        last_audio = loop.time()
                        # Faster than real time: this client's next message waits, no one else's.
                        hold = allowance.take(chunk.size, last_audio)
                        if allowance.held > settings.max_wait_s:  # a flood: neighbours first
                            reason = "sending faster than real time: stream closed"
                            await _send_error(websocket, reason)
                            await websocket.close(code=1008, reason=reason)
                            break
                        await asyncio.sleep(hold)
                        stream = client.stream
                        stream.share = allowance.tokens / allowance.burst
                        # ahead of real time: a hop a turn, so that a turn's share of a
                        # flood stays small
                        step = chunk.size if stream.share >= 0.5 else stream.hop
                        found = []
                        for first in range(0, chunk.size, step):
                            found += await hub.score(stream, chunk[first : first + step])
                        await _send_scores(websocket, client.detector, columns)
                        for event in found:
                            await websocket.send_json({"type": "event", **event.to_dict()})
                    else:
                        reply = client.command(message.get("text") or "", settings)
                        await websocket.send_json(
                            {"type": "ready", **info_of(client.detector.config)}
                            if reply == "ready"
                            else {"type": "threshold", "value": client.detector.config.threshold}
                        )
                except MessageError as err:
                    await _send_error(websocket, str(err))
        except (WebSocketDisconnect, OSError):  # the client went away mid-send
            pass
        finally:
            app.state.clients -= 1  # the detector and its audio go with ``client``

    async def transcribe(request: Request) -> JSONResponse:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return _http_error(411, "send the file with a Content-Length")
        if int(length) > settings.max_upload_bytes + 64 * 1024:  # the form's own bytes
            limit = settings.max_upload_bytes / 2**20
            return _http_error(413, f"file too large (at most {limit:.3g} MiB)")
        uploads: set[_Upload] = app.state.uploads
        if len(uploads) >= max(1, settings.upload_workers) + settings.upload_queue:
            return _http_error(503, f"server busy: {len(uploads)} uploads in progress")
        job = _Upload(Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX)))
        uploads.add(job)
        try:
            return await run_upload(request, job)
        finally:
            job.cancel.set()  # a worker still on it stops at its next block of audio
            uploads.discard(job)
            job.remove()

    async def run_upload(request: Request, job: _Upload) -> JSONResponse:
        form = await request.form(max_files=1, max_fields=4, max_part_size=4096)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _http_error(400, "send the audio file as the form field 'file'")
        name = printable(Path(upload.filename or "upload").name)
        try:
            config = file_config(settings.config)  # as transcribe runs files
            if form.get("threshold"):
                config = config.with_threshold(_threshold(form.get("threshold")))
        except MessageError as err:
            return _http_error(400, str(err))
        path = job.folder / f"upload{_suffix(name)}"
        with path.open("wb") as out:
            while block := await upload.read(1 << 20):
                out.write(block)
        transcriber = Transcriber(classifier, top_k=3, jobs=1, detector=config)
        limit = settings.max_upload_seconds
        work = asyncio.wrap_future(upload_pool.submit(job.transcribe, transcriber, path, limit))
        while not work.done():  # the client may leave while its file is transcribed
            await asyncio.wait([work], timeout=0.2)
            if not work.done() and await request.is_disconnected():
                job.cancel.set()  # the worker stops at its next block of audio
                # nobody waits for it: its exception is taken here, not logged as lost
                work.add_done_callback(lambda done: done.cancelled() or done.exception())
                return _http_error(499, "the client closed the connection")
        try:
            records = work.result()
        except _TooLongError as err:
            return _http_error(413, f"{name}: {err}")
        except AudioError as err:
            return _http_error(415, f"{name}: {err.problem}")
        failures = [r for r in records if isinstance(r, Failure)]
        if failures:
            return _http_error(415, f"{name}: {failures[0].problem}")
        results = []
        for record in records:
            if isinstance(record, ClipResult):
                top = [{"label": label, "score": score} for label, score in record.top]
                results.append({"kind": "clip", **top[0], "top": top})
            elif isinstance(record, EventResult):
                results.append({"kind": "event", **record.event.to_dict()})
        summary = transcriber.summary
        return JSONResponse({"file": name, "audio_s": summary.audio_s, "results": results})

    async def http_error(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, HTTPException)
        return _http_error(err.status_code, " ".join(str(err.detail).split()))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:  # stopping (Ctrl-C, SIGTERM): uploads stop, their folders go
            for job in list(app.state.uploads):
                job.cancel.set()
                job.remove()
            hub.close()
            upload_pool.shutdown(wait=False, cancel_futures=True)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", api_info),
            Route("/api/transcribe", transcribe, methods=["POST"]),
            WebSocketRoute("/ws", stream),
            Mount("/static", StaticFiles(directory=WEB), name="static"),
        ],
        middleware=[Middleware(HostGuard, allowed=settings.allowed_hosts)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.clients = 0
    app.state.uploads = set()
    app.state.upload_pool = upload_pool
    app.state.hub = hub
    return app


class _TooLongError(Exception):
    """An upload holds more audio than the server takes; ``str()`` says how much."""


class _CancelledError(Exception):
    """An upload whose client left, or a server that is stopping."""


class _Upload:
    """One admitted upload: its temporary folder and the flag that stops its work."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cancel = threading.Event()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def transcribe(self, transcriber: Transcriber, path: Path, limit_s: float) -> list:
        """The upload's records, in a worker thread. Admitted by the header's duration
        before anything is decoded; a long recording is then streamed in blocks and
        stopped between blocks when ``cancel`` is set or the audio runs past ``limit_s``
        (a header may understate it).

        Raises:
            _TooLongError: the audio is longer than ``limit_s``.
            AudioError: the file is not audio.
            _CancelledError: ``cancel`` was set.
        """
        header = info(path)
        unknown = header.frames >= UNKNOWN_FRAMES  # a FLAC written to a pipe, say
        if header.duration_s > limit_s and not unknown:
            raise _TooLongError(
                f"{header.duration_s:.0f} s of audio is over the {limit_s:g} s limit"
            )
        heard = 0.0

        def on_audio(seconds: float) -> None:
            nonlocal heard
            heard += seconds
            if self.cancel.is_set():
                raise _CancelledError()
            if heard > limit_s + 1.0:
                said = "did not say how long" if unknown else "said less"
                raise _TooLongError(f"more than {limit_s:g} s of audio (its header {said})")

        if self.cancel.is_set():
            raise _CancelledError()
        return list(transcriber.run([path], on_audio=on_audio))


def _lower_priority() -> None:
    """Run this thread at a lower priority (Linux: a thread has its own nice value), so
    that live streams get the CPU first while an upload is transcribed."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


@dataclass
class _Client:
    """One WebSocket client's state: its stream (and detector) and its sample format."""

    stream: Stream | None
    dtype: np.dtype | None

    @property
    def detector(self) -> StreamingDetector | None:
        return None if self.stream is None else self.stream.detector

    def command(self, text: str, settings: Settings) -> str:
        """Apply a text message; ``"ready"`` or ``"threshold"`` names the reply. A start
        begins a new stream at time zero."""
        if len(text) > settings.max_message_bytes:
            raise MessageError(f"message of {len(text)} characters is too large")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            raise MessageError("not a JSON message") from None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "start":
            fmt, rate = message.get("format", "int16"), message.get("sample_rate", SAMPLE_RATE)
            if fmt not in FORMATS:
                raise MessageError(f"sample format {fmt!r}: send {' or '.join(FORMATS)}")
            if rate != settings.config.sample_rate:
                raise MessageError(
                    f"sample rate {rate!r}: send {settings.config.sample_rate} Hz mono audio"
                )
            self.dtype = FORMATS[fmt]
            self.stream = Stream(settings.classifier, settings.config)
            return "ready"
        if kind == "threshold":
            if self.detector is None:
                raise MessageError("send a start message first")
            self.detector.set_threshold(_threshold(message.get("value")))
            return "threshold"
        raise MessageError(f"unknown message type {kind!r} (start, threshold or audio)")

    def samples(self, data: bytes, limit: int) -> np.ndarray:
        """Check an audio message and decode it: (N,) float32 in [-1, 1]."""
        if self.detector is None or self.dtype is None:
            raise MessageError("send a start message before audio")
        if len(data) > limit:
            raise MessageError(f"audio message of {len(data)} bytes is over the {limit} limit")
        size = self.dtype.itemsize
        if len(data) % size:
            raise MessageError(
                f"audio message of {len(data)} bytes is not whole {self.dtype.name} samples "
                f"({size} bytes each)"
            )
        samples = np.frombuffer(data, dtype=self.dtype)
        if self.dtype.kind == "i":
            return samples.astype(np.float32) / 32768.0
        if not np.isfinite(samples).all():
            raise MessageError("float32 audio holds NaN or infinite samples")
        return np.clip(samples, -1.0, 1.0).astype(np.float32)


def _threshold(value: object) -> float:
    try:
        number = float(value)  # a form field arrives as text
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0 < number <= 1:
        raise MessageError(f"threshold must be a number in (0, 1], got {value!r}"[:120])
    return number


async def _send_scores(
    websocket: WebSocket, detector: StreamingDetector, columns: np.ndarray
) -> None:
    """Send the windows scored since the last call, and forget them."""
    if not detector.trace:
        return
    scores = np.stack(detector.trace)[:, columns].astype(float).round(4).tolist()  # (W, K)
    times = [round(t, 3) for t in detector.trace_times]
    detector.trace.clear()
    detector.trace_times.clear()
    await websocket.send_json({"type": "scores", "times": times, "scores": scores})


async def _send_error(websocket: WebSocket, message: str) -> None:
    await websocket.send_json({"type": "error", "message": printable(message)})


def _http_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": printable(message)}, status_code=status)


def _suffix(name: str) -> str:
    """The upload's extension when it is a plain one (decoders look at it), else none."""
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: any free one), opened before the
    server starts, so that a taken port is one line and a client may connect at once.

    Raises:
        ServeError: the address cannot be used.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as err:
        raise ServeError(f"--host {host}: {getattr(err, 'strerror', None) or err}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)  # connections wait in the backlog until the server takes them
    except OSError as err:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({err.strerror})") from None
    return sock


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the page until Ctrl-C (or SIGTERM).

    Args:
        settings: the model and detector settings.
        host: address to listen on.
        port: port (0: any free one; ``announce`` gives the one taken).
        announce: called once with ``http://HOST:PORT/`` when the server is listening.

    Raises:
        ServeError: the address cannot be used.
    """
    import uvicorn

    sock = listen(host, port)
    bound = sock.getsockname()[1]
    # The address the server is bound to is a name its users may type, as localhost is.
    hosts = (*settings.allowed_hosts, host_name(host))
    app = create_app(dataclasses.replace(settings, allowed_hosts=hosts))
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ws_max_size=max(1 << 20, 4 * settings.max_message_bytes),  # larger: closed by uvicorn
        ws_max_queue=4,  # a client held to real time keeps at most this many messages waiting
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    name = f"[{host}]" if ":" in host else host
    announce(f"http://{name}:{bound}/")
    server.run(sockets=[sock])
