"""`speech-gru serve`: the page, its WebSocket stream and uploads, through Starlette's
TestClient (a stand-in model and a tiny checkpoint); the real server in a subprocess; and
the page in headless Chromium listening to a fake microphone that plays spoken keywords.
"""

from __future__ import annotations

import json
import os
import shutil
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

from speech_gru.cli.main import main
from speech_gru.cli.serve import Settings, create_app
from speech_gru.runtime.classifier import Classifier, load_classifier
from speech_gru.runtime.detector import DetectorConfig, StreamingDetector
from tests.helpers import (
    SEQUENCE,
    TINY_LABELS,
    default_ctrl_c,
    keyword_sequence,
    tiny_checkpoint,
    tone_burst,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FRAME = 1600  # samples per message: 100 ms, what the page sends


def stand_in(started: threading.Event | None = None, release: threading.Event | None = None):
    """A classifier over TINY_LABELS that says "yes" for a loud window, "_silence_" for a
    quiet one. With ``started``/``release``, a model run first sets ``started`` and then
    waits (at most 20 s) for ``release``; ``waits`` records whether it was released."""
    waits: list[bool] = []

    def backend(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        if release is not None:
            started.set()
            waits.append(release.wait(20))
        loud = np.sqrt((batch**2).mean(axis=1)) > 0.05
        probs = np.full((len(batch), len(TINY_LABELS)), 0.02, dtype=np.float32)
        probs[loud, TINY_LABELS.index("yes")] = 0.94
        probs[~loud, TINY_LABELS.index("_silence_")] = 0.94
        return probs

    classifier = Classifier(backend, list(TINY_LABELS), Path("stand-in.ckpt"), "checkpoint")
    return classifier, waits


def make_client(classifier: Classifier, **settings) -> TestClient:  # noqa: ANN003
    config = DetectorConfig(batch_windows=1)
    settings.setdefault("allowed_hosts", ("testserver",))  # TestClient's Host
    # these tests send seconds of audio at once; holding a client to real time is
    # tested in test_hostile_serve.py
    settings.setdefault("burst_s", 60.0)
    return TestClient(create_app(Settings(classifier, config, workers=2, **settings)))


def word_audio() -> np.ndarray:
    """4 s: quiet noise with a 0.5 s tone at 2.0 s (the stand-in's "yes"): windows ending
    from 2.1 s to 3.4 s are loud."""
    return tone_burst(seconds=4.0, start_s=2.0, length_s=0.5, amp=0.3)


def pcm(wave: np.ndarray, fmt: str = "int16") -> list[bytes]:
    """100 ms messages of ``wave`` in the page's format."""
    if fmt == "int16":
        data = np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2")
    else:
        data = wave.astype("<f4")
    return [data[i : i + FRAME].tobytes() for i in range(0, len(data), FRAME)]


def stream_all(ws, frames: list[bytes], until_s: float) -> tuple[list[dict], list[dict]]:  # noqa: ANN001
    """Send every frame, then read until the scores reach ``until_s``: (scores, events)."""
    for frame in frames:
        ws.send_bytes(frame)
    scores, events = [], []
    while not scores or scores[-1]["times"][-1] < until_s - 1e-6:
        message = ws.receive_json()
        assert message["type"] in ("scores", "event"), message
        (scores if message["type"] == "scores" else events).append(message)
    return scores, events


def start(ws, fmt: str = "int16", rate: int = 16000) -> dict:  # noqa: ANN001
    ws.send_json({"type": "start", "format": fmt, "sample_rate": rate})
    return ws.receive_json()


def expect_error(ws, contains: str) -> None:  # noqa: ANN001
    message = ws.receive_json()
    assert message["type"] == "error", message
    assert contains in message["message"] and "\n" not in message["message"]


# -- the app through TestClient ------------------------------------------------------------


def test_the_page_and_its_files_are_served() -> None:
    client = make_client(stand_in()[0])
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for name in ("app.js", "worklet.js", "style.css"):
        assert f"/static/{name}" in page.text or name == "worklet.js"
        assert client.get(f"/static/{name}").status_code == 200
    assert 'registerProcessor("pcm-16k"' in client.get("/static/worklet.js").text
    info = client.get("/api/info").json()
    assert info["keywords"] == ["yes", "no"] and info["labels"] == TINY_LABELS
    assert info["threshold"] == 0.7 and info["hop_s"] == 0.1 and info["sample_rate"] == 16000
    assert client.get("/static/../serve.py").status_code == 404


@pytest.mark.parametrize("fmt", ["int16", "float32"])
def test_a_stream_of_pcm_gets_scores_and_events(fmt: str) -> None:
    client = make_client(stand_in()[0])
    with client.websocket_connect("/ws") as ws:
        ready = start(ws, fmt)
        assert ready["type"] == "ready" and ready["keywords"] == ["yes", "no"]
        scores, events = stream_all(ws, pcm(word_audio(), fmt), until_s=4.0)
    times = [t for message in scores for t in message["times"]]
    assert np.allclose(times, np.arange(1.0, 4.01, 0.1))  # one window a hop, from 1 s on
    rows = [row for message in scores for row in message["scores"]]
    assert all(len(row) == 2 for row in rows)  # (yes, no), averaged
    assert max(row[0] for row in rows) == pytest.approx(0.94)
    assert [(e["label"], e["time_s"]) for e in events] == [("yes", pytest.approx(2.4))]
    assert events[0]["score"] == pytest.approx((4 * 0.94 + 0.02) / 5)
    assert client.app.state.clients == 0


def test_the_threshold_control_changes_detection() -> None:
    client = make_client(stand_in()[0])
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "threshold", "value": 0.95})
        assert ws.receive_json() == {"type": "threshold", "value": 0.95}
        _, events = stream_all(ws, pcm(word_audio()), until_s=4.0)
        assert events == []  # the averaged score never reaches 0.95
        start(ws)  # a new start: time zero again, the server's threshold again
        ws.send_json({"type": "threshold", "value": 0.3})
        assert ws.receive_json()["value"] == 0.3
        _, events = stream_all(ws, pcm(word_audio()), until_s=4.0)
        # 2.2 s: "yes" 0.39 is over 0.3, but "_silence_" (0.57) is still the top class
        assert [(e["label"], e["time_s"]) for e in events] == [("yes", pytest.approx(2.3))]


def test_bad_messages_get_one_line_errors_and_every_client_is_still_served() -> None:
    client = make_client(stand_in()[0], max_message_bytes=8000)
    with client.websocket_connect("/ws") as bad, client.websocket_connect("/ws") as good:
        assert client.app.state.clients == 2
        bad.send_bytes(b"\x00\x00" * 100)
        expect_error(bad, "send a start message before audio")
        bad.send_text("{not json")
        expect_error(bad, "not a JSON message")
        bad.send_json(["start"])
        expect_error(bad, "unknown message type None")
        bad.send_json({"type": "play"})
        expect_error(bad, "unknown message type 'play'")
        bad.send_json({"type": "threshold", "value": 0.5})
        expect_error(bad, "send a start message first")
        assert start(bad, "int24")["message"] == "sample format 'int24': send int16 or float32"
        assert start(bad, rate=44100)["message"] == "sample rate 44100: send 16000 Hz mono audio"
        assert start(bad)["type"] == "ready"
        bad.send_bytes(b"\x01\x02\x03")
        expect_error(bad, "3 bytes is not whole int16 samples")
        bad.send_bytes(b"\x00" * 8002)
        expect_error(bad, "8002 bytes is over the 8000 limit")
        bad.send_text("x" * 9000)
        expect_error(bad, "too large")
        for value in (0, 1.5, "high", True, None):
            bad.send_json({"type": "threshold", "value": value})
            expect_error(bad, "threshold must be a number in (0, 1]")
        assert start(bad, "float32")["type"] == "ready"
        bad.send_bytes(np.full(100, np.nan, dtype="<f4").tobytes())
        expect_error(bad, "NaN or infinite")

        # the other client, and the one that erred, both stream as usual
        assert start(good)["type"] == "ready"
        _, events = stream_all(good, pcm(word_audio()), until_s=4.0)
        assert [e["label"] for e in events] == ["yes"]
        _, events = stream_all(bad, pcm(word_audio(), "float32"), until_s=4.0)
        assert [e["label"] for e in events] == ["yes"]
    assert client.app.state.clients == 0  # both detectors freed


def test_another_sites_page_may_not_stream_or_upload() -> None:
    from starlette.websockets import WebSocketDisconnect

    client = make_client(stand_in()[0])
    with pytest.raises(WebSocketDisconnect) as closed:  # noqa: SIM117
        with client.websocket_connect("/ws", headers={"origin": "https://evil.example"}):
            pass
    assert closed.value.code == 1008
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        assert start(ws)["type"] == "ready"  # the page's own origin
    files = {"file": ("clip.wav", b"RIFF")}
    response = client.post("/api/transcribe", files=files, headers={"origin": "https://x.io"})
    assert response.status_code == 403


def test_too_many_clients_are_refused_with_a_message() -> None:
    client = make_client(stand_in()[0], max_clients=1)
    with client.websocket_connect("/ws") as first:
        assert start(first)["type"] == "ready"
        with client.websocket_connect("/ws") as second:
            expect_error(second, "server busy: 1 streams open")
        assert start(first)["type"] == "ready"


def test_a_client_that_vanishes_frees_its_state() -> None:
    client = make_client(stand_in()[0])
    with client.websocket_connect("/ws") as ws:
        start(ws)
        for frame in pcm(word_audio())[:5]:  # half a window: audio held, nothing scored yet
            ws.send_bytes(frame)
        assert client.app.state.clients == 1
    deadline = time.monotonic() + 10
    while client.app.state.clients and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.app.state.clients == 0


def test_a_model_run_does_not_hold_up_other_clients() -> None:
    started, release = threading.Event(), threading.Event()
    classifier, waits = stand_in(started, release)
    client = make_client(classifier)
    with client.websocket_connect("/ws") as busy, client.websocket_connect("/ws") as other:
        start(busy)
        for frame in pcm(word_audio())[:10]:  # a full window: the model runs, and waits
            busy.send_bytes(frame)
        assert started.wait(20)
        assert start(other)["type"] == "ready"  # answered while the model run is blocked
        other.send_json({"type": "threshold", "value": 0.5})
        assert other.receive_json()["type"] == "threshold"
        release.set()
        assert busy.receive_json()["type"] == "scores"
    assert waits and all(waits)  # released by the test, not by the 20 s timeout


def test_upload_transcribes_a_clip_and_a_recording(tmp_path: Path) -> None:
    client = make_client(stand_in()[0])
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone_burst(seconds=1.0, start_s=0.2, length_s=0.5, amp=0.3), 16000)
    response = client.post("/api/transcribe", files={"file": ("clip.wav", clip.read_bytes())})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["file"] == "clip.wav" and data["audio_s"] == pytest.approx(1.0)
    [result] = data["results"]
    assert result["kind"] == "clip" and result["label"] == "yes" and len(result["top"]) == 3

    long = tmp_path / "long.flac"
    sf.write(long, word_audio(), 16000)
    files = {"file": ("my long.flac", long.read_bytes())}
    data = client.post("/api/transcribe", files=files, data={"threshold": "0.75"}).json()
    assert [(r["kind"], r["label"]) for r in data["results"]] == [("event", "yes")]
    assert data["results"][0]["time_s"] == pytest.approx(2.4)
    data = client.post("/api/transcribe", files=files, data={"threshold": "0.95"}).json()
    assert data["results"] == []  # the page's threshold applies to uploads too


def test_bad_uploads_are_one_line_4xx_errors(tmp_path: Path) -> None:
    client = make_client(stand_in()[0], max_upload_bytes=200_000)

    def post(**kwargs) -> tuple[int, str]:  # noqa: ANN003
        response = client.post("/api/transcribe", **kwargs)
        error = response.json()["error"]
        assert "\n" not in error
        return response.status_code, error

    text = {"file": ("notes.txt", b"this is not audio\n" * 50)}
    status, error = post(files=text)
    assert status == 415 and error.startswith("notes.txt: ")
    status, error = post(files={"file": ("fake.wav", b"RIFF" + os.urandom(2000))})
    assert status == 415 and error.startswith("fake.wav: ")
    assert post(data={"threshold": "0.5"}) == (400, "send the audio file as the form field 'file'")
    wav = tmp_path / "clip.wav"
    sf.write(wav, word_audio()[:16000], 16000)
    status, error = post(files={"file": ("clip.wav", wav.read_bytes())}, data={"threshold": "x"})
    assert status == 400 and error.startswith("threshold must be a number in (0, 1]")
    status, error = post(files={"file": ("big.wav", b"\x00" * 300_000)})
    assert (status, error) == (413, "file too large (at most 0.191 MiB)")
    assert client.get("/api/transcribe").status_code == 405
    # the server is fine afterwards
    assert client.post("/api/transcribe", files={"file": ("c.wav", wav.read_bytes())}).is_success


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.ckpt")


def test_a_real_checkpoint_streams_through_the_app(tiny: Path) -> None:
    client = make_client(load_classifier(tiny))
    with client.websocket_connect("/ws") as ws:
        start(ws)
        scores, _ = stream_all(ws, pcm(word_audio()), until_s=4.0)
    rows = np.array([row for message in scores for row in message["scores"]])
    assert rows.shape == (31, 2) and np.all((rows >= 0) & (rows <= 1))


def test_serve_on_a_taken_port_is_a_one_line_error(
    tiny: Path, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(tiny), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: cannot listen on 127.0.0.1:{port} (Address already in use)"


# -- the real server, in a subprocess ------------------------------------------------------


class Server:
    """``speech-gru serve`` on a free port, in a subprocess; ``url`` once it listens."""

    def __init__(self, checkpoint: Path, *args: str) -> None:
        command = [sys.executable, "-m", "speech_gru.cli", "serve", "--checkpoint",
                   str(checkpoint), "--port", "0", *args]  # fmt: skip
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, preexec_fn=default_ctrl_c
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.startswith("serving on "):
                self.url = line.split()[2]
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.stop()
        raise AssertionError("the server did not start:\n" + "\n".join(self.lines))

    def _drain(self) -> None:  # a full pipe would stall the server
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@pytest.mark.slow
def test_the_server_streams_over_a_real_websocket_and_stops_on_ctrl_c(tiny: Path) -> None:
    from websockets.sync.client import connect

    server = Server(tiny, "--threshold", "0.6", "--allow-host", "kitchen.lan")
    try:
        assert any(line.startswith("operating point: defaults") for line in server.lines)
        with urllib.request.urlopen(server.url + "api/info", timeout=30) as response:
            assert json.load(response)["threshold"] == 0.6
        port = server.url.rstrip("/").rsplit(":", 1)[1]
        for host, status in [("kitchen.lan", 200), ("localhost", 200), ("evil.example", 400)]:
            request = urllib.request.Request(
                server.url + "api/info", headers={"Host": f"{host}:{port}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert response.status == status, host
            except urllib.error.HTTPError as err:
                assert err.code == status, host
        ws_url = server.url.replace("http://", "ws://") + "ws"
        with connect(ws_url) as ws, connect(ws_url) as other:
            ws.send(json.dumps({"type": "start", "format": "int16", "sample_rate": 16000}))
            assert json.loads(ws.recv(30))["type"] == "ready"
            other.send(b"\x00\x01")
            assert json.loads(other.recv(30))["type"] == "error"
            for frame in pcm(word_audio()):
                ws.send(frame)
            last = 0.0
            while last < 4.0 - 1e-6:
                message = json.loads(ws.recv(30))
                if message["type"] == "scores":
                    last = message["times"][-1]
            other.send(b"\x00" * (1 << 21))  # over the protocol's limit: the server hangs up
            with pytest.raises(Exception, match="1009"):
                other.recv(30)
            ws.send(json.dumps({"type": "threshold", "value": 0.9}))
            assert json.loads(ws.recv(30))["type"] == "threshold"  # still served
    finally:
        assert server.stop() == 0


# -- the page in a real browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def sequence_wav(commands_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keyword_sequence(commands_dir, tmp_path_factory.mktemp("serve-seq") / "sequence.wav")


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("chromium and chromium-driver are not installed (make system-packages)")
    return chromium, driver


@pytest.fixture
def browser(sequence_wav: Path) -> Iterator:
    chromium, driver = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={sequence_wav}",
                 "--autoplay-policy=no-user-gesture-required",
                 "--window-size=1100,1160"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_page_hears_the_keywords_from_a_microphone(
    browser, checkpoint: Path, sequence_wav: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    """Headless Chromium's fake microphone plays the spoken keywords in a loop; the page
    resamples, streams and lists them. Set SPEECH_GRU_SCREENSHOT=docs/serve.png to keep
    the screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server(checkpoint, "--threshold", "0.4", "--workers", "1")
    try:
        browser.get(server.url)
        wait = WebDriverWait(browser, 120, poll_frequency=0.25)
        button = wait.until(lambda d: (b := d.find_element(By.ID, "listen")).is_enabled() and b)
        button.click()
        wait.until(lambda d: d.find_element(By.ID, "status").text == "listening")

        def heard(d) -> bool:  # noqa: ANN001
            labels = {row.get_attribute("data-label") for row in d.find_elements(
                By.CSS_SELECTOR, "#events tr.event")}  # fmt: skip
            return set(SEQUENCE) <= labels

        try:
            wait.until(heard)
        except Exception:
            logs = "\n".join(str(e) for e in browser.get_log("browser"))
            rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#events tr")]
            raise AssertionError(f"events {rows}; console:\n{logs}") from None
        assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
        level = browser.find_element(By.ID, "level-bar").get_attribute("style")
        assert "width" in level

        # the same file through the page's upload form
        browser.find_element(By.ID, "file").send_keys(str(sequence_wav))
        browser.find_element(By.CSS_SELECTOR, "#upload-form button").click()
        wait.until(lambda d: d.find_element(By.ID, "results").is_displayed())
        cells = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr td:nth-child(2)")
        assert [c.text for c in cells] == SEQUENCE
        shot = Path(os.environ.get("SPEECH_GRU_SCREENSHOT") or tmp_path / "serve.png")
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000

        # and a file that is not audio: an error on the page, the stream still running
        notes = tmp_path / "notes.txt"
        notes.write_text("not audio\n" * 100)
        browser.find_element(By.ID, "file").send_keys(str(notes))
        browser.find_element(By.CSS_SELECTOR, "#upload-form button").click()
        error = wait.until(lambda d: (e := d.find_element(By.ID, "upload-error")).text and e)
        assert error.text.startswith("notes.txt: ")
        assert browser.find_element(By.ID, "status").text == "listening"
    finally:
        assert server.stop() == 0


# -- batching clients ------------------------------------------------------------------------


def test_the_streams_that_waited_are_scored_in_one_model_call() -> None:
    started, release = threading.Event(), threading.Event()
    classifier, _ = stand_in(started, release)
    sizes: list[int] = []
    backend = classifier.backend

    def counting(batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        sizes.append(len(batch))
        return backend(batch, lengths)

    classifier.backend = counting
    client = make_client(classifier)
    hub = client.app.state.hub
    window = pcm(word_audio())[:10]  # one second: one window each
    with (
        client,  # one event loop for every connection, as a server has
        client.websocket_connect("/ws") as first,
        client.websocket_connect("/ws") as second,
        client.websocket_connect("/ws") as third,
    ):
        for ws in (first, second, third):
            start(ws)
        for frame in window:
            first.send_bytes(frame)
        assert started.wait(20)  # the model is busy with the first stream's window
        for ws in (second, third):
            ws.send_bytes(b"".join(window))  # one message each: the pair waits together
        deadline = time.monotonic() + 20
        while len(hub.pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        release.set()
        for ws in (first, second, third):
            message = ws.receive_json()
            assert message["type"] == "scores" and message["times"] == [1.0]
    assert sizes == [1, 2]  # the two that waited: one call
    assert hub.model_calls == 2 and hub.messages == 12


def test_clients_of_a_forward_model_keep_their_own_state_in_shared_batches(
    tmp_path: Path,
) -> None:
    """Two clients streaming different audio at once, their frames batched together, each
    get the scores their audio gets streamed alone."""
    forward = load_classifier(tiny_checkpoint(tmp_path / "forward.ckpt", forward=True))
    config = DetectorConfig(batch_windows=1, hop_s=0.02)
    settings = Settings(forward, config, workers=1, allowed_hosts=("testserver",), burst_s=60.0)
    client = TestClient(create_app(settings))
    audio = [word_audio(), tone_burst(seconds=4.0, start_s=1.0, length_s=1.0, amp=0.2)]
    expected = []
    for wave in audio:
        alone = StreamingDetector(forward.scorer(config), forward.labels, config, keep_trace=True)
        alone.run([np.clip(np.round(wave * 32768), -32768, 32767) / 32768])  # as int16 sends
        keywords = [i for i, label in enumerate(forward.labels) if label in ("yes", "no")]
        expected.append(np.stack(alone.trace)[:, keywords])
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
        start(a), start(b)
        frames = [pcm(wave) for wave in audio]
        for frame_a, frame_b in zip(*frames, strict=True):  # interleaved
            a.send_bytes(frame_a)
            b.send_bytes(frame_b)
        got = [stream_all(ws, [], until_s=4.0)[0] for ws in (a, b)]
    for scores, want in zip(got, expected, strict=True):
        rows = np.array([row for message in scores for row in message["scores"]])
        assert rows.shape == want.shape == (1 + (64000 - 16000) // 320, 2)
        np.testing.assert_allclose(rows, want, atol=6e-5)  # the server rounds to 4 digits
    hub = client.app.state.hub
    assert hub.messages == 2 * 40  # each client's 100 ms messages, scored in turns
