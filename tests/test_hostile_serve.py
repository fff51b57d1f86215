"""`speech-gru serve` under abuse: DNS rebinding and foreign origins, uploads that would buy
hours of CPU, uploaders that hang up, a server stopped mid-upload, idle sockets and clients
that flood. Through Starlette's TestClient and a real uvicorn on 127.0.0.1 (every wait
bounded).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from speech_gru.cli.guard import RealTime
from speech_gru.cli.serve import Settings, create_app, listen
from speech_gru.runtime.classifier import Classifier
from speech_gru.runtime.detector import DetectorConfig
from tests.helpers import TINY_LABELS, tiny_checkpoint, tone_burst

pytestmark = pytest.mark.usefixtures("one_thread")

FRAME = 1600  # samples per message: 100 ms, as the page sends
START = {"type": "start", "format": "int16", "sample_rate": 16000}


class StandIn:
    """A classifier over TINY_LABELS ("yes" for a loud window, "_silence_" for a quiet one)
    that counts the batches of more than one window (uploads score 32 windows at a time,
    live streams one) and can hold them until ``release`` is set."""

    def __init__(self, hold: bool = False) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.hold = hold
        self.upload_calls = 0
        self.classifier = Classifier(
            self.backend, list(TINY_LABELS), Path("stand-in.ckpt"), "checkpoint"
        )

    def backend(self, batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        if len(batch) > 1:
            self.upload_calls += 1
            self.started.set()
            if self.hold:
                self.release.wait(30)
        loud = np.sqrt((batch**2).mean(axis=1)) > 0.05
        probs = np.full((len(batch), len(TINY_LABELS)), 0.02, dtype=np.float32)
        probs[loud, TINY_LABELS.index("yes")] = 0.94
        probs[~loud, TINY_LABELS.index("_silence_")] = 0.94
        return probs


def settings(classifier: Classifier, **kwargs) -> Settings:  # noqa: ANN003
    return Settings(classifier, DetectorConfig(batch_windows=1), workers=1, **kwargs)


def pcm(wave: np.ndarray) -> list[bytes]:
    data = np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2")
    return [data[i : i + FRAME].tobytes() for i in range(0, len(data), FRAME)]


def word_audio(seconds: float = 4.0) -> np.ndarray:
    return tone_burst(seconds=seconds, start_s=2.0, length_s=0.5, amp=0.3)


@contextlib.contextmanager
def running(app) -> Iterator[str]:  # noqa: ANN001
    """The app on a real uvicorn on 127.0.0.1 (a free port), in a thread: its base URL."""
    import uvicorn

    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_queue=4))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_until(condition, seconds: float = 20.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def post(url: str, body: bytes, kind: str) -> int:
    """POST ``body`` to ``url``: the HTTP status."""
    request = urllib.request.Request(url, body, {"Content-Type": kind}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "speechgruboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


# -- Host and Origin ---------------------------------------------------------------------------

HOST = "127.0.0.1:8000"
REFUSED = [  # (Host, Origin or None, status): what a page on another site can send
    ("evil.example:8000", "http://evil.example:8000", 400),  # DNS rebinding
    ("evil.example:8000", None, 400),  # Host spoofed, no Origin
    ("EVIL.example", "http://127.0.0.1:8000", 400),  # Host spoofed, the page's Origin
    ("127.0.0.1.evil.example:8000", None, 400),
    ("127.0.0.1:8000@evil.example", None, 400),
    ("", None, 400),
    (HOST, "https://127.0.0.1:8000", 403),  # wrong scheme
    (HOST, "http://127.0.0.1:9999", 403),  # wrong port
    (HOST, "http://127.0.0.1", 403),  # port 80 is another origin
    (HOST, "http://localhost:8000", 403),  # another host than the one asked for
    (HOST, "http://evil.example:8000", 403),
    (HOST, "null", 403),
]
ALLOWED = [
    (HOST, None),
    (HOST, "http://127.0.0.1:8000"),
    ("localhost:8000", "http://localhost:8000"),
    ("[::1]:8000", "http://[::1]:8000"),
    ("LocalHost:8000", None),
]


def test_dns_rebinding_and_foreign_origins_reach_nothing(tmp_path: Path) -> None:
    stand_in = StandIn()
    client = TestClient(create_app(settings(stand_in.classifier)))
    wav = tmp_path / "clip.wav"
    sf.write(wav, word_audio(1.0), 16000)
    for host, origin, status in REFUSED:
        headers = {"host": host} | ({"origin": origin} if origin else {})
        for path in ("/", "/api/info", "/static/app.js"):
            response = client.get(f"http://{HOST}{path}", headers=headers)
            assert response.status_code == status, (host, origin, path)
            error = response.json()["error"]
            assert "\n" not in error and ("Host" in error or "origin" in error)
        files = {"file": ("clip.wav", wav.read_bytes())}
        response = client.post(f"http://{HOST}/api/transcribe", files=files, headers=headers)
        assert response.status_code == status, (host, origin)
        with pytest.raises(WebSocketDisconnect) as closed:  # noqa: SIM117
            with client.websocket_connect(f"ws://{HOST}/ws", headers=headers) as ws:
                ws.send_json(START)
                ws.receive_json()
        assert closed.value.code == 1008, (host, origin)
    assert stand_in.upload_calls == 0 and client.app.state.clients == 0


def test_the_loopback_names_and_allowed_hosts_are_served(tmp_path: Path) -> None:
    client = TestClient(create_app(settings(StandIn().classifier, allowed_hosts=("kitchen.lan",))))
    for host, origin in [*ALLOWED, ("kitchen.lan:8000", "http://kitchen.lan:8000")]:
        headers = {"host": host} | ({"origin": origin} if origin else {})
        assert client.get(f"http://{HOST}/", headers=headers).status_code == 200, host
        assert client.get(f"http://{HOST}/api/info", headers=headers).status_code == 200, host
        with client.websocket_connect(f"ws://{HOST}/ws", headers=headers) as ws:
            ws.send_json(START)
            assert ws.receive_json()["type"] == "ready", host


def test_a_served_https_page_is_its_own_origin_only() -> None:
    client = TestClient(create_app(settings(StandIn().classifier)), base_url=f"https://{HOST}")
    ok = client.get("/api/info", headers={"origin": "https://127.0.0.1:8000"})
    assert ok.status_code == 200
    assert client.get("/api/info", headers={"origin": f"http://{HOST}"}).status_code == 403


# -- uploads -------------------------------------------------------------------------------------


def test_an_upload_is_admitted_by_its_decoded_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    stand_in = StandIn()
    client = TestClient(create_app(settings(stand_in.classifier, max_upload_seconds=60)))
    hours = tmp_path / "ten-minutes.flac"  # a 1 kHz FLAC: 10 minutes in a few KB
    sf.write(hours, np.zeros(600 * 1000, dtype=np.float32), 1000, format="FLAC")
    assert hours.stat().st_size < 20_000
    files = {"file": ("ten-minutes.flac", hours.read_bytes())}
    response = client.post(f"http://{HOST}/api/transcribe", files=files)
    assert response.status_code == 413
    assert response.json() == {"error": "ten-minutes.flac: 600 s of audio is over the 60 s limit"}
    assert stand_in.upload_calls == 0  # refused from the header, nothing decoded or scored
    short = tmp_path / "short.flac"
    sf.write(short, word_audio(), 16000)
    response = client.post(
        f"http://{HOST}/api/transcribe", files={"file": ("short.flac", short.read_bytes())}
    )
    assert response.status_code == 200 and response.json()["results"][0]["label"] == "yes"
    response = client.post(f"http://{HOST}/api/transcribe", files={"file": ("x.wav", b"RIFF")})
    assert response.status_code == 415
    assert list((tmp_path / "tmp").iterdir()) == []  # every upload's folder is gone


def test_an_upload_whose_header_gives_no_length_stops_at_the_limit(tmp_path: Path) -> None:
    stand_in = StandIn()
    client = TestClient(create_app(settings(stand_in.classifier, max_upload_seconds=30)))
    flac = tmp_path / "long.flac"
    sf.write(flac, np.resize(word_audio(), 120 * 16000), 16000)
    data = bytearray(flac.read_bytes())
    data[21] &= 0xF0  # STREAMINFO's 36-bit sample count: 0, "unknown"
    data[22:26] = bytes(4)
    files = {"file": ("long.flac", bytes(data))}
    response = client.post(f"http://{HOST}/api/transcribe", files=files)
    assert response.status_code == 413
    assert response.json() == {
        "error": "long.flac: more than 30 s of audio (its header did not say how long)"
    }
    assert stand_in.upload_calls <= 16  # 40 s at most of the 120: 32 windows a call


def test_uploads_never_hold_up_a_live_stream(tmp_path: Path) -> None:
    stand_in = StandIn(hold=True)  # every upload's model run waits until released
    app = create_app(settings(stand_in.classifier, max_clients=2, upload_queue=3))
    long = tmp_path / "long.flac"
    sf.write(long, word_audio(), 16000)
    body, kind = multipart("long.flac", long.read_bytes())
    answers: list[int] = []
    from websockets.sync.client import connect

    with running(app) as address:

        def upload() -> None:
            answers.append(post(f"http://{address}/api/transcribe", body, kind))

        uploads = [threading.Thread(target=upload) for _ in range(6)]
        for thread in uploads:
            thread.start()
        assert stand_in.started.wait(20)
        assert wait_until(lambda: len(answers) >= 2)  # over the queue: refused at once
        assert answers[:2] == [503, 503]
        try:
            with connect(f"ws://{address}/ws") as ws:
                ws.send(json.dumps(START))
                assert json.loads(ws.recv(20))["type"] == "ready"
                for frame in pcm(word_audio())[:12]:
                    ws.send(frame)
                message = json.loads(ws.recv(20))  # scored while every upload waits
                assert message["type"] == "scores"
        finally:
            stand_in.release.set()
            for thread in uploads:
                thread.join(60)
    assert sorted(answers) == [200, 200, 200, 200, 503, 503]


def test_an_upload_stops_when_its_client_hangs_up(tmp_path: Path) -> None:
    stand_in = StandIn(hold=True)
    app = create_app(settings(stand_in.classifier))
    long = tmp_path / "minute.flac"
    sf.write(long, np.resize(word_audio(), 60 * 16000), 16000)  # 19 model runs of 32 windows
    body, kind = multipart("minute.flac", long.read_bytes())
    with running(app) as address:
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            head = (
                f"POST /api/transcribe HTTP/1.1\r\nHost: {address}\r\n"
                f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
            assert stand_in.started.wait(20)
            job = next(iter(app.state.uploads))
        # the client has gone: the server notices, and its worker stops at the next block
        assert wait_until(lambda: not app.state.uploads)
        assert job.cancel.is_set() and not job.folder.exists()
        stand_in.release.set()
        app.state.upload_pool.submit(lambda: None).result(30)  # after the upload's work
    assert stand_in.upload_calls <= 4  # of the 19 the whole minute takes


@pytest.mark.slow
def test_sigterm_mid_upload_leaves_no_temporary_folder(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    long = tmp_path / "long.flac"
    sf.write(long, np.resize(word_audio(), 290 * 16000), 16000)
    body, kind = multipart("long.flac", long.read_bytes())
    command = [sys.executable, "-m", "speech_gru.cli", "serve", "--checkpoint", str(checkpoint),
               "--port", "0", "--hop", "0.01", "--threads", "1"]  # fmt: skip
    env = {**__import__("os").environ, "TMPDIR": str(tmp)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = ""
        for line in process.stderr:
            if line.startswith("serving on "):
                url = line.split()[2]
                break
        assert url, "the server did not start"
        threading.Thread(target=process.stderr.read, daemon=True).start()

        def upload() -> None:
            with contextlib.suppress(OSError):
                post(url + "api/transcribe", body, kind)

        threading.Thread(target=upload, daemon=True).start()
        assert wait_until(
            lambda: any(p.name.startswith("speech-gru-upload-") for p in tmp.iterdir()), 60
        )
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    assert [p.name for p in tmp.iterdir() if p.name.startswith("speech-gru-upload-")] == []


# -- live streams ----------------------------------------------------------------------------


def test_a_stream_that_sends_no_audio_is_closed_with_one_line() -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    app = create_app(settings(StandIn().classifier, max_clients=1, idle_timeout_s=0.5))
    with running(app) as address:
        with connect(f"ws://{address}/ws") as ws:
            ws.send(json.dumps(START))
            assert json.loads(ws.recv(20))["type"] == "ready"
            ws.send(json.dumps({"type": "threshold", "value": 0.5}))  # text is not audio
            assert json.loads(ws.recv(20))["type"] == "threshold"
            message = json.loads(ws.recv(20))
            assert message == {"type": "error", "message": "no audio for 0.5 s: stream closed"}
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(20)
            assert closed.value.rcvd.code == 1008
            assert closed.value.rcvd.reason == "no audio for 0.5 s: stream closed"
        assert wait_until(lambda: app.state.clients == 0)
        with connect(f"ws://{address}/ws") as ws:  # the slot is free again
            ws.send(json.dumps(START))
            assert json.loads(ws.recv(20))["type"] == "ready"


def test_a_client_is_read_no_faster_than_real_time() -> None:
    from websockets.sync.client import connect

    app = create_app(settings(StandIn().classifier, burst_s=0.5, max_message_bytes=3200))
    frames = pcm(word_audio(2.0))  # 2 s of audio, sent at once: slowed, not closed
    with running(app) as address, connect(f"ws://{address}/ws") as ws:
        ws.send(json.dumps(START))
        assert json.loads(ws.recv(20))["type"] == "ready"
        began = time.monotonic()
        for frame in frames:
            ws.send(frame)
        last = 0.0
        while last < 2.0 - 1e-6:
            message = json.loads(ws.recv(20))
            if message["type"] == "scores":
                last = message["times"][-1]
        # 2 s of audio with 0.5 s of burst: read over at least 1.5 s (less only if rushed)
        assert time.monotonic() - began >= 1.5 - 0.05


def test_the_real_time_allowance_slows_only_a_client_ahead_of_it() -> None:
    allowance = RealTime(rate=16000, burst=16000, now=0.0)
    assert [allowance.take(1600, 0.1 * k) for k in range(1, 50)] == [0.0] * 49  # real time
    flood = RealTime(rate=16000, burst=16000, now=0.0)
    waits = [flood.take(1600, 0.0) for _ in range(30)]  # 3 s at once
    assert waits[:10] == [0.0] * 10  # the burst: one second
    assert waits[-1] == pytest.approx(2.0)  # then real time: the 30th waits 2 s
    # a client that sat idle may not save up more than the burst
    quiet = RealTime(rate=16000, burst=16000, now=0.0)
    assert quiet.take(16000, 100.0) == 0.0 and quiet.take(16000, 100.0) == pytest.approx(1.0)


def test_a_flooding_client_is_closed_and_its_neighbour_served() -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    app = create_app(settings(StandIn().classifier))
    flood = np.zeros(32768, dtype="<i2").tobytes()  # 64 KiB: 2 s of audio a message
    with (
        running(app) as address,
        connect(f"ws://{address}/ws") as flooder,
        connect(f"ws://{address}/ws") as neighbour,
    ):
        for ws in (flooder, neighbour):
            ws.send(json.dumps(START))
            assert json.loads(ws.recv(20))["type"] == "ready"
        for _ in range(3):  # 6 s of audio at once
            flooder.send(flood)
        for frame in pcm(word_audio(1.2)):  # at real time, by the microphone's clock
            neighbour.send(frame)
        reply = neighbour.recv(20)
        assert json.loads(reply)["type"] == "scores"
        messages = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                messages.append(json.loads(flooder.recv(20)))
        assert messages[-1] == {
            "type": "error",
            "message": "sending faster than real time: stream closed",
        }
        assert closed.value.rcvd.code == 1008
