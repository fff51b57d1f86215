"""Load test of ``speech-gru serve``: how many real-time microphone streams one CPU core
keeps up with.

Starts ``speech-gru serve`` on 127.0.0.1 (a free port) in a subprocess pinned to one
core (``--core``; one model worker, one torch thread), and runs this process's clients on
the other cores. For each count in ``--clients`` that many WebSocket clients stream at
once for ``--seconds``: each sends 100 ms int16 frames at real-time pace, as the page
does, starting a fraction of a hop apart, and reads the scores back. A window's latency
runs from sending the frame that completes it to receiving its scores. A level is kept up
when no client got an error and every client's 95th-percentile latency is within
``--max-latency``; the sweep stops at the first level that is not. It also reports the
server's CPU time per second of audio (from /proc), whose inverse is the streams a core
would carry with nothing else running.

With ``--flood N --idle M`` it runs the abuse load test instead: N clients send 64 KiB
messages as fast as the server reads them, M clients open a stream and send nothing, and
one well-behaved client streams at real time; it reports the well-behaved client's
latency (the server holds each client to real time, so the flood should not reach it).
Everything runs on 127.0.0.1 and stops after ``--seconds``.

Examples (a few seconds per level):
    python tools/bench_serve.py --checkpoint model.ckpt --clients 1 4 16 32 64 --seconds 4
    python tools/bench_serve.py --checkpoint model.ckpt --flood 60 --idle 64 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speech_gru.core.audio import SAMPLE_RATE, AudioError, load_audio

FRAME = 1600  # samples per message (100 ms), as the page sends


@dataclass
class ClientResult:
    """What one client saw: latency of each scored window (s), errors, the last window."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_scored_s: float = 0.0


async def run_client(url: str, frames: list[bytes], delay_s: float, slack_s: float) -> ClientResult:
    """Stream ``frames`` at real-time pace after ``delay_s``; read scores until the last
    window is scored or ``slack_s`` after the last frame."""
    from websockets.asyncio.client import connect

    result = ClientResult()
    total_s = len(frames) * FRAME / SAMPLE_RATE
    sent_at: dict[int, float] = {}  # window end (samples) -> when its last frame went
    await asyncio.sleep(delay_s)
    async with connect(url, max_size=1 << 22) as ws:
        start = {"type": "start", "format": "int16", "sample_rate": SAMPLE_RATE}
        await ws.send(json.dumps(start))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            result.errors.append(str(ready.get("message", ready)))
            return result

        async def read() -> None:
            async for text in ws:
                message = json.loads(text)
                if message["type"] == "scores":
                    now = time.perf_counter()
                    for t in message["times"]:
                        if (end := round(t * SAMPLE_RATE)) in sent_at:
                            result.latencies.append(now - sent_at[end])
                    result.last_scored_s = message["times"][-1]
                    if result.last_scored_s >= total_s - 1e-6:
                        return
                elif message["type"] == "error":
                    result.errors.append(message["message"])

        reader = asyncio.create_task(read())
        t0 = time.perf_counter()
        for k, frame in enumerate(frames):
            # frame k holds [k, k + 1) hops of audio: a microphone has it at t0 + (k + 1) hops
            await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME / SAMPLE_RATE - time.perf_counter()))
            sent_at[(k + 1) * FRAME] = time.perf_counter()
            await ws.send(frame)
        try:
            await asyncio.wait_for(reader, slack_s)
        except TimeoutError:
            reader.cancel()
    return result


async def flood_client(url: str, message: bytes, seconds: float) -> tuple[int, bool]:
    """Send ``message`` over and over for ``seconds``, as fast as the server reads, while
    reading what comes back: (messages sent, whether the server closed the stream)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    sent = 0
    async with connect(url, max_size=1 << 22) as ws:
        await ws.send(json.dumps({"type": "start", "format": "int16", "sample_rate": SAMPLE_RATE}))
        await ws.recv()

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass

        reader = asyncio.create_task(drain())
        end = time.perf_counter() + seconds
        try:
            while time.perf_counter() < end:
                try:
                    await asyncio.wait_for(ws.send(message), max(0.01, end - time.perf_counter()))
                except TimeoutError:
                    break
                sent += 1
        except ConnectionClosed:
            return sent, True
        finally:
            reader.cancel()
    return sent, False


async def idle_client(url: str, seconds: float) -> bool:
    """Open a stream and send nothing for ``seconds``: whether the server took it."""
    from websockets.asyncio.client import connect

    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "format": "int16", "sample_rate": SAMPLE_RATE}))
        ready = json.loads(await ws.recv())
        await asyncio.sleep(seconds)
    return ready.get("type") == "ready"


def good_client(url: str, frames: list[bytes], results: multiprocessing.Queue) -> None:
    """The well-behaved client, in a process of its own: the flood's client side does not
    delay what it measures."""
    result = asyncio.run(run_client(url, frames, 0.0, 5.0))
    results.put(result)


async def run_abuse(url: str, frames: list[bytes], flood: int, idle: int) -> tuple:
    """The idle clients, then the flooders, then one well-behaved client, all at once."""
    seconds = len(frames) * FRAME / SAMPLE_RATE
    message = np.random.default_rng(0).integers(-3000, 3000, 32768, dtype="<i2").tobytes()
    idles = [asyncio.create_task(idle_client(url, seconds + 2)) for _ in range(idle)]
    await asyncio.sleep(0.5)
    floods = [asyncio.create_task(flood_client(url, message, seconds + 1)) for _ in range(flood)]
    await asyncio.sleep(0.5)
    results: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=good_client, args=(url, frames, results))
    process.start()
    good = await asyncio.to_thread(results.get, True, seconds + 30)
    await asyncio.to_thread(process.join, 30)
    flooded = await asyncio.gather(*floods, return_exceptions=True)
    idled = await asyncio.gather(*idles, return_exceptions=True)
    return good, flooded, idled


def abuse(args: argparse.Namespace, url: str, frames: list[bytes]) -> dict:
    """Run the abuse load test once and print what the well-behaved client saw."""
    ws_url = url.replace("http://", "ws://") + "ws"
    good, flooded, idled = asyncio.run(run_abuse(ws_url, frames, args.flood, args.idle))
    latency = np.array(good.latencies or [np.inf])
    sent = [n for n, _ in (f for f in flooded if isinstance(f, tuple))]
    closed = sum(1 for f in flooded if isinstance(f, tuple) and f[1])
    audio_s = len(frames) * FRAME / SAMPLE_RATE
    row = {
        "flood": args.flood,
        "idle": args.idle,
        "idle_taken": sum(1 for ok in idled if ok is True),
        "flood_audio_s_each": float(np.mean(sent) * 32768 / SAMPLE_RATE) if sent else 0.0,
        "flood_closed": closed,
        "flood_failures": len(flooded) - len(sent),
        "windows": len(good.latencies),
        "latency_p50_ms": 1000 * float(np.percentile(latency, 50)),
        "latency_p95_ms": 1000 * float(np.percentile(latency, 95)),
        "latency_max_ms": 1000 * float(latency.max()),
        "behind_s": float(audio_s - good.last_scored_s),
        "errors": good.errors,
        "kept_up": bool(not good.errors and float(np.percentile(latency, 95)) <= args.max_latency),
    }
    print(f"{args.flood} flooding + {args.idle} idle ({row['idle_taken']} taken) + 1 "
          f"well-behaved client, {audio_s:g} s: each flooder sent "
          f"{row['flood_audio_s_each']:.1f} s of audio ({closed} closed by the server); the "
          f"well-behaved client's "
          f"{row['windows']} windows: p50 {row['latency_p50_ms']:.0f} ms, p95 "
          f"{row['latency_p95_ms']:.0f} ms, max {row['latency_max_ms']:.0f} ms, "
          f"{row['behind_s']:.2f} s behind, errors {good.errors[:1]}")  # fmt: skip
    return row


async def run_level(url: str, frames: list[bytes], clients: int, slack_s: float) -> list:
    hop_s = FRAME / SAMPLE_RATE
    tasks = [run_client(url, frames, hop_s * i / clients, slack_s) for i in range(clients)]
    return await asyncio.gather(*tasks, return_exceptions=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    checkpoint: str, core: int, max_clients: int, hop: float | None = None
) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "speech_gru.cli", "serve", "--checkpoint", checkpoint,
               "--host", "127.0.0.1", "--port", "0", "--workers", "1", "--threads", "1",
               "--max-clients", str(max_clients), "--idle-timeout", "600"]  # fmt: skip
    if hop is not None:
        command += ["--hop", str(hop)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )  # fmt: skip
    lines = []
    for line in process.stderr:
        lines.append(line.rstrip())
        if line.startswith("serving on "):
            return process, line.split()[2]
    process.wait()
    raise RuntimeError("the server did not start:\n" + "\n".join(lines))


def model_size(checkpoint: str) -> str:
    """``12,345 parameters (GRU, hidden 16 x 2 layers)`` for a checkpoint."""
    from speech_gru.runtime.checkpoint import ModelLoadError, load_checkpoint_model, model_kind

    try:
        if model_kind(checkpoint) != "checkpoint":
            return "an export"
        model, labels, _ = load_checkpoint_model(checkpoint)
    except ModelLoadError as err:
        return str(err)
    params = sum(p.numel() for p in model.parameters())
    arch = model.config.architecture
    return (
        f"{params:,} parameters ({arch.cell.upper()}, hidden {arch.hidden_size} x "
        f"{arch.num_layers} layers, {len(labels)} labels)"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Real-time streams one core of speech-gru serve keeps up with.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="model the server loads")
    p.add_argument("--input", help="audio each client streams (default: pink noise)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64],
                   help="client counts, tried in order")  # fmt: skip
    p.add_argument("--seconds", type=float, default=5.0, help="audio each client streams")
    p.add_argument("--max-latency", type=float, default=0.5,
                   help="95th-percentile window latency (s) a level may reach")  # fmt: skip
    p.add_argument("--core", type=int, default=None,
                   help="CPU core the server runs on (default: the last one)")  # fmt: skip
    p.add_argument("--hop", type=float, help="the server's --hop, s (default: its own)")
    p.add_argument("--flood", type=int, default=0,
                   help="abuse test: clients sending 64 KiB messages at full speed")  # fmt: skip
    p.add_argument("--idle", type=int, default=0,
                   help="abuse test: clients that open a stream and send nothing")  # fmt: skip
    p.add_argument("--json", help="write the results to this file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from speech_gru.train.corpus import synthetic_noise

    cores = sorted(os.sched_getaffinity(0))
    core = cores[-1] if args.core is None else args.core
    others = set(cores) - {core}
    if others:
        os.sched_setaffinity(0, others)  # the clients stay off the server's core
    n = round(args.seconds * SAMPLE_RATE)
    try:
        wave = load_audio(args.input) if args.input else synthetic_noise(args.seconds)[1]
    except AudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pcm = np.clip(np.round(np.resize(wave, n) * 32768), -32768, 32767).astype("<i2")
    frames = [pcm[i : i + FRAME].tobytes() for i in range(0, n - FRAME + 1, FRAME)]
    audio_s = len(frames) * FRAME / SAMPLE_RATE

    size = model_size(args.checkpoint)
    most = max(max(args.clients), args.flood + args.idle + 1)
    process, url = start_server(args.checkpoint, core, most, args.hop)
    if args.flood or args.idle:
        try:
            print(f"model: {args.checkpoint}: {size}; server on core {core}, clients on "
                  f"{sorted(others) or [core]}")  # fmt: skip
            row = abuse(args, url, frames)
        finally:
            process.terminate()
            process.wait(30)
        if args.json:
            Path(args.json).write_text(json.dumps({"model": size, **row}, indent=2) + "\n")
        return 0 if row["kept_up"] else 1
    ws_url = url.replace("http://", "ws://") + "ws"
    print(f"model: {args.checkpoint}: {size}")
    print(f"server: {url} on core {core} (1 worker, 1 thread); clients on cores "
          f"{sorted(others) or [core]}; {audio_s:g} s of audio per client, hop 0.1 s")  # fmt: skip
    header = "clients  windows/s  p50 ms  p95 ms  max ms  behind s  errors  cpu s/audio s  kept up"
    print(header)
    rows, sustained = [], 0
    try:
        asyncio.run(run_level(ws_url, frames[:20], 1, 5.0))  # warm-up
        for clients in args.clients:
            cpu0, t0 = cpu_seconds(process.pid), time.perf_counter()
            results = asyncio.run(run_level(ws_url, frames, clients, max(2.0, args.seconds)))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(process.pid) - cpu0
            failed = [r for r in results if isinstance(r, BaseException)]
            done = [r for r in results if isinstance(r, ClientResult)]
            latency = np.array([x for r in done for x in r.latencies] or [np.inf])
            p95 = [np.percentile(r.latencies, 95) if r.latencies else np.inf for r in done]
            errors = len(failed) + sum(len(r.errors) for r in done)
            behind = max((audio_s - r.last_scored_s for r in done), default=audio_s)
            ok = bool(not errors and len(done) == clients and max(p95) <= args.max_latency)
            row = {
                "clients": clients,
                "windows_per_s": sum(len(r.latencies) for r in done) / wall,
                "latency_p50_ms": 1000 * float(np.percentile(latency, 50)),
                "latency_p95_ms": 1000 * float(np.percentile(latency, 95)),
                "latency_max_ms": 1000 * float(latency.max()),
                "behind_s": float(behind),
                "errors": errors,
                "cpu_s_per_audio_s": cpu / (clients * audio_s),
                "kept_up": ok,
            }
            rows.append(row)
            print(f"{clients:7d}  {row['windows_per_s']:9.0f}  {row['latency_p50_ms']:6.0f}  "
                  f"{row['latency_p95_ms']:6.0f}  {row['latency_max_ms']:6.0f}  {behind:8.2f}  "
                  f"{errors:6d}  {row['cpu_s_per_audio_s']:13.4f}  {'yes' if ok else 'no'}",
                  flush=True)  # fmt: skip
            if failed:
                print(f"  first failure: {failed[0]!r}"[:200])
            if not ok:
                break
            sustained = clients
    finally:
        process.terminate()
        process.wait(30)
    cost = min((r["cpu_s_per_audio_s"] for r in rows), default=0.0)
    print(f"one core kept up with {sustained} real-time streams (the most tried that all kept "
          f"up); its CPU time per second of audio, {cost:.4f} s, gives "
          f"{1 / cost if cost else 0:.0f} streams per core with nothing else running")  # fmt: skip
    if args.json:
        summary = {"model": size, "core": core, "audio_s": audio_s, "levels": rows,
                   "streams_kept_up": sustained}  # fmt: skip
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
