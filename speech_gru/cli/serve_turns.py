"""How ``speech-gru serve`` scores its live streams: every waiting client's audio in one
model call per turn.

A client's task hands each audio message to the ``Hub`` and awaits its events. The hub
takes everything that waited since its last turn, runs the model once for all of it in a
model thread (the frames of a forward model through ``Stepper.many``, each client's state
its own; the windows of a bidirectional model through one ``score_windows`` call), and
then runs each client's ``StreamingDetector`` on its message, the detector's scorer
answering from what the model gave (``Stream.answer``). While a turn runs, the next
clients' messages gather, so a busy server makes fewer, larger model calls and no thread
per client.

The windows a detector scores are known before it runs: they end at ``window``, then
every ``hop`` samples, and each ends no later than the audio received. ``Stream`` follows
the same positions (tested equal to the detector alone, window for window).
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from speech_gru.runtime.classifier import Classifier
from speech_gru.runtime.detector import DetectorConfig, Event, StreamingDetector
from speech_gru.runtime.factory import new_detector


class Stream:
    """One client's stream: its detector and the model's answers for its windows, worked
    out ahead of the detector.

    Args:
        classifier: the model.
        config: the detector settings.
    """

    def __init__(self, classifier: Classifier, config: DetectorConfig) -> None:
        self.hop, self.window = config.hop, config.window
        self.received = 0  # samples given to the model
        self.next_end = config.window  # end of the next window to answer for
        self.answers: deque[np.ndarray] = deque()  # (C,) per window, in order
        self.share = 1.0  # of its real-time allowance left: under 1/2, it is ahead
        stepper = classifier.stepper
        if stepper is not None:  # a forward model: its state and its recent frames
            self.state = stepper.start(1)
            self.frames = np.zeros((0, len(classifier.labels)), dtype=np.float32)
            self.frames_from = 0  # index of frames[0] in the stream
        self.buffer = np.zeros(0, dtype=np.float32)  # a window model: samples from ...
        self.buffer_start = 0  # ... this one on
        self.detector: StreamingDetector = new_detector(
            classifier, config, self.answer, keep_trace=True
        )

    def answer(self, windows: np.ndarray) -> np.ndarray:
        """The detector's scorer: (B, window) -> (B, C), answered in order."""
        return np.stack([self.answers.popleft() for _ in range(len(windows))])

    def ends(self) -> np.ndarray:
        """End samples of the windows the audio received so far completes, not yet
        answered; moves ``next_end`` past them."""
        if self.received < self.next_end:
            return np.zeros(0, dtype=np.int64)
        count = (self.received - self.next_end) // self.hop + 1
        ends = self.next_end + self.hop * np.arange(count)
        self.next_end = int(ends[-1]) + self.hop
        return ends


AHEAD_PER_TURN = 1
"""Messages of streams ahead of real time (a flood) a turn takes: the streams at real
time never wait behind more than these."""

MIN_SHARE = 32
"""Fewest messages a model thread takes from a turn: a model call's cost grows slowly with
its batch, so a small turn is not split."""


class _Turns:
    """One event loop's turns: the task that runs them, what waits, and its wake-up."""

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.pending: list[tuple[Stream, np.ndarray, asyncio.Future]] = []
        self.wake = asyncio.Event()


class Hub:
    """Scores the live streams in turns (see the module's docstring).

    Args:
        classifier: the model.
        workers: model threads; a turn of many streams is shared among them.
    """

    def __init__(self, classifier: Classifier, workers: int = 1) -> None:
        self.classifier = classifier
        self.workers = max(1, workers)
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="speech-gru-model")
        self.turns = 0  # turns run
        self.messages = 0  # messages scored
        self.model_calls = 0  # model calls made
        # the turns of each event loop (a server has one; a test client may run several)
        self._loops: dict[asyncio.AbstractEventLoop, _Turns] = {}

    @property
    def pending(self) -> list:
        """The messages waiting for the next turn, over every event loop."""
        return [item for turns in list(self._loops.values()) for item in turns.pending]

    async def score(self, stream: Stream, chunk: np.ndarray) -> list[Event]:
        """Push ``chunk`` into ``stream``'s detector, scored in a coming turn: its events.
        A stream whose ``share`` is under one half waits while others come first."""
        loop = asyncio.get_running_loop()
        turns = self._loops.get(loop)
        if turns is None or turns.task.done():
            for old in [key for key in self._loops if key.is_closed()]:
                del self._loops[old]
            turns = self._loops[loop] = _Turns(loop.create_task(self._run()))
        future = loop.create_future()
        turns.pending.append((stream, chunk, future))
        turns.wake.set()
        return await future

    def close(self) -> None:
        """Stop the turns and the model threads."""
        for turns in self._loops.values():
            turns.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)  # ``score`` registers this loop's turns first
        turns = self._loops[loop]
        while True:
            await turns.wake.wait()
            turns.wake.clear()
            await asyncio.sleep(0)  # clients woken by the last turn hand in their next message
            items, turns.pending = self._take(turns.pending)
            if turns.pending:
                turns.wake.set()  # the streams ahead of real time go in a later turn
            if not items:
                continue
            # a large turn is shared among the model threads; a small one is one call
            share = min(self.workers, -(-len(items) // MIN_SHARE))
            size = -(-len(items) // share)
            parts = [items[i : i + size] for i in range(0, len(items), size)]
            runs = [
                loop.run_in_executor(self.executor, self.turn, [(s, c) for s, c, _ in part])
                for part in parts
            ]
            results = await asyncio.gather(*runs, return_exceptions=True)
            self.turns += 1
            for part, result in zip(parts, results, strict=True):
                for k, (_, _, future) in enumerate(part):
                    if future.done():  # its client is gone
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result[k])

    @staticmethod
    def _take(pending: list) -> tuple[list, list]:
        """This turn's messages and those left for later: every stream at real time (a
        ``share`` of its allowance of one half or more), and at most ``AHEAD_PER_TURN`` of
        the streams ahead of it, most allowance left first."""
        ahead = sorted(
            (item for item in pending if item[0].share < 0.5), key=lambda item: -item[0].share
        )
        if len(ahead) <= AHEAD_PER_TURN:
            return pending, []
        late = {id(item) for item in ahead[AHEAD_PER_TURN:]}
        now = [item for item in pending if id(item) not in late]
        return now, [item for item in pending if id(item) in late]

    def turn(self, items: list[tuple[Stream, np.ndarray]]) -> list[list[Event]]:
        """One model call for every stream's new audio, then each detector: the events
        of each ``(stream, chunk)``, in order."""
        if self.classifier.stepper is not None:
            self._frames(items)
        else:
            self._windows(items)
        self.messages += len(items)
        return [stream.detector.push(chunk) for stream, chunk in items]

    def _frames(self, items: list[tuple[Stream, np.ndarray]]) -> None:
        stepper = self.classifier.stepper
        assert stepper is not None
        results = stepper.many([(chunk[None, :], stream.state) for stream, chunk in items])
        self.model_calls += 1
        for (stream, chunk), (probs, state) in zip(items, results, strict=True):
            stream.state = state
            if probs.shape[1]:
                stream.frames = np.concatenate([stream.frames, probs[0]])
            stream.received += chunk.size
            for end in stream.ends():  # the last frame each window completes
                frame = (int(end) - stepper.n_fft) // stepper.frame_hop
                stream.answers.append(stream.frames[frame - stream.frames_from])
            # keep the frames from the one the next window needs (or the last one)
            need = (stream.next_end - stepper.n_fft) // stepper.frame_hop
            drop = min(need - stream.frames_from, len(stream.frames) - 1)
            if drop > 0:
                stream.frames = stream.frames[drop:]
                stream.frames_from += drop

    def _windows(self, items: list[tuple[Stream, np.ndarray]]) -> None:
        windows, counts = [], []
        for stream, chunk in items:
            stream.buffer = np.concatenate([stream.buffer, chunk])
            stream.received += chunk.size
            ends = stream.ends()
            offsets = ends - stream.window - stream.buffer_start
            windows += [stream.buffer[o : o + stream.window] for o in offsets]
            counts.append(len(ends))
            keep_from = stream.next_end - stream.window - stream.buffer_start
            if keep_from > 0:
                stream.buffer = stream.buffer[keep_from:]
                stream.buffer_start += keep_from
        if not windows:
            return
        probs = np.asarray(self.classifier.score_windows(np.stack(windows)), dtype=np.float32)
        self.model_calls += 1
        for (stream, _), rows in zip(items, np.split(probs, np.cumsum(counts)[:-1]), strict=True):
            stream.answers.extend(rows)
