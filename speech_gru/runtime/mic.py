"""The microphone: live PortAudio input (through sounddevice) as mono 16 kHz chunks.

sounddevice and its PortAudio library are imported only when a microphone is opened or
listed; a missing one is a one-line ``MicrophoneError`` naming the command that installs it.
"""

from __future__ import annotations

import contextlib
import importlib
import queue
import threading
from collections.abc import Iterator
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import soxr

from speech_gru.core.audio import _RESAMPLE_QUALITY, SAMPLE_RATE, AudioError, _mixdown, _Rebuffer
from speech_gru.core.audio_checks import _check_rate, _one_line


class MicrophoneError(AudioError):
    """The microphone (PortAudio input device) could not be opened or stopped delivering.

    ``str(err)`` is one line, ``"microphone: {problem}"`` (or ``"microphone 'name': ..."``
    once a device is known), e.g. ``"microphone: no audio input device found"``.
    """

    def __init__(self, problem: str, path: str = "microphone") -> None:
        super().__init__(path, problem)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problem, self.path))


_PIP_HINT = "pip install sounddevice"
_APT_HINT = "apt-get install libportaudio2"


def _import_sounddevice() -> ModuleType:
    """Import :mod:`sounddevice` lazily, turning a missing package/library into an error.

    Raises:
        MicrophoneError: With the command that installs what is missing.
    """
    try:
        return importlib.import_module("sounddevice")
    except ImportError:
        raise MicrophoneError(f"sounddevice is not installed; run: {_PIP_HINT}") from None
    except OSError:  # sounddevice raises OSError("PortAudio library not found")
        raise MicrophoneError(f"the PortAudio library is not installed; run: {_APT_HINT}") from None


def list_devices() -> str:
    """Return sounddevice's table of audio devices (``python -m sounddevice`` output).

    Returns:
        The table as text, one device per line; empty if PortAudio sees no devices.

    Raises:
        MicrophoneError: If sounddevice or PortAudio is missing or cannot be queried.
    """
    sd = _import_sounddevice()
    try:
        return str(sd.query_devices())
    except Exception as exc:
        raise MicrophoneError(f"cannot list audio devices ({_one_line(exc)})") from None


class Microphone:
    """Live microphone input as an iterator of mono float32 chunks.

    Built on a ``sounddevice.InputStream`` whose callback pushes blocks into a queue. The
    device is opened at ``sample_rate`` if it supports it, otherwise at its default rate
    with streaming soxr resampling; its channels are averaged. Input overflows (the
    consumer being too slow for PortAudio) are counted in :attr:`overflows` rather than
    raised.

    Example::

        with Microphone(block_seconds=0.1) as mic:
            for chunk in mic:          # chunk.shape == (1600,), float32
                ...

    Attributes:
        device: PortAudio device index in use.
        device_name: Its name.
        sample_rate: Rate of the chunks produced (Hz).
        device_rate: Rate the device is opened at (Hz).
        channels: Number of channels captured (averaged to mono).
        block_size: Samples per produced chunk, ``round(block_seconds * sample_rate)``.
        timeout: Seconds without audio after which iteration raises.
        startup_timeout: Seconds the first block may take (PulseAudio's ALSA plugin, for
            one, delivers its first block about 2 s after the stream starts).
        overflows: Number of callbacks that reported an input overflow.
        dropped: Number of device blocks dropped because the queue was full.
    """

    def __init__(
        self,
        device: int | str | None = None,
        block_seconds: float = 0.1,
        sample_rate: int = SAMPLE_RATE,
        channels: int = 1,
        timeout: float = 2.0,
        startup_timeout: float = 10.0,
        max_queued_blocks: int = 200,
    ) -> None:
        """Find and check the input device (the stream is opened by :meth:`start`).

        Args:
            device: Device index, a case-insensitive substring of its name, or ``None`` for
                the default input device.
            block_seconds: Length of the produced chunks in seconds.
            sample_rate: Rate of the produced chunks in Hz.
            channels: Channels to capture (all are averaged). Lowered to what the device
                offers when it has fewer.
            timeout: Seconds the device may stay silent (deliver nothing) before iteration
                raises ``MicrophoneError("audio device stopped delivering")``.
            max_queued_blocks: Capacity of the callback queue; further blocks are dropped
                and counted in :attr:`dropped`.

        Raises:
            MicrophoneError: If sounddevice/PortAudio is missing, no (matching) input
                device exists, or the device supports no usable settings.
            ValueError: For non-positive numeric arguments.
        """
        self.sample_rate = _check_rate(sample_rate)
        if not block_seconds > 0 or not timeout > 0 or channels < 1 or max_queued_blocks < 1:
            raise ValueError("block_seconds, timeout, channels, max_queued_blocks must be > 0")
        self._sd = _import_sounddevice()
        self.device, self.device_name, max_channels, default_rate = self._find_device(device)
        self.channels = min(int(channels), max_channels)
        self.block_size = max(1, round(block_seconds * self.sample_rate))
        self.timeout = float(timeout)
        self.startup_timeout = max(float(startup_timeout), self.timeout)
        self._delivered = False
        self.device_rate = self._choose_rate(default_rate)
        self._device_block = max(1, round(block_seconds * self.device_rate))
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=max_queued_blocks)
        self._lock = threading.Lock()
        self.overflows = 0
        self.dropped = 0
        self._stream: Any = None
        self._resampler: soxr.ResampleStream | None = None
        self._rebuffer = _Rebuffer(self.block_size)
        self._closed = False

    # -- device selection -----------------------------------------------------------------

    def _error(self, problem: str) -> MicrophoneError:
        name = getattr(self, "device_name", None)
        return MicrophoneError(problem, f"microphone '{name}'" if name else "microphone")

    def _find_device(self, device: int | str | None) -> tuple[int, str, int, int]:
        """Resolve ``device`` to ``(index, name, max_input_channels, default_rate)``."""
        sd = self._sd
        try:
            devices = list(sd.query_devices())
        except Exception as exc:
            raise MicrophoneError(f"cannot query audio devices ({_one_line(exc)})") from None
        inputs = [(i, d) for i, d in enumerate(devices) if int(d.get("max_input_channels", 0)) > 0]
        if not inputs:
            raise MicrophoneError(
                "no audio input device found (see speech-gru stream --list-devices)"
            )
        if isinstance(device, str) and device.strip().isdigit():  # --device 1: an index
            device = int(device)
        if device is None:
            try:  # PortAudio's default input, or sounddevice.default.device if set
                index = int(sd.query_devices(kind="input")["index"])
            except Exception:
                index = -1
            if index not in dict(inputs):
                raise MicrophoneError("no default audio input device")
        elif isinstance(device, (int, np.integer)) and not isinstance(device, bool):
            device = int(device)
            if device not in dict(inputs):
                raise MicrophoneError(f"device {device} is not an audio input device")
            index = device
        else:
            wanted = str(device).lower()
            matches = [i for i, d in inputs if wanted in str(d.get("name", "")).lower()]
            if not matches:
                raise MicrophoneError(f"no audio input device matches {device!r}")
            if len(matches) > 1:
                names = ", ".join(repr(str(devices[i]["name"])) for i in matches)
                raise MicrophoneError(f"{device!r} matches several input devices: {names}")
            index = matches[0]
        d = devices[index]
        rate = int(round(float(d.get("default_samplerate") or self.sample_rate)))
        return index, str(d.get("name", index)), int(d["max_input_channels"]), rate

    def _choose_rate(self, default_rate: int) -> int:
        """Return ``sample_rate`` if the device accepts it, else the device default rate."""
        for rate in dict.fromkeys((self.sample_rate, default_rate)):
            try:
                self._sd.check_input_settings(
                    device=self.device, channels=self.channels, dtype="float32", samplerate=rate
                )
                return rate
            except Exception:  # any refusal: try the next rate
                continue
        raise self._error(
            f"supports neither {self.sample_rate} Hz nor its default {default_rate} Hz "
            f"with {self.channels} channel(s)"
        )

    # -- stream lifecycle -----------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        """PortAudio callback (runs on the audio thread): queue a copy of the block."""
        if status and getattr(status, "input_overflow", False):
            with self._lock:
                self.overflows += 1
        try:
            self._queue.put_nowait(np.array(indata, dtype=np.float32, copy=True))
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def start(self) -> Microphone:
        """Open and start the input stream (called by ``__enter__``).

        Returns:
            ``self``.

        Raises:
            MicrophoneError: If PortAudio cannot open or start the stream.
        """
        if self._stream is not None:
            return self
        self._closed = False
        self._delivered = False
        self._rebuffer = _Rebuffer(self.block_size)
        while not self._queue.empty():  # leftovers from a previous start()
            self._queue.get_nowait()
        if self.device_rate != self.sample_rate:
            self._resampler = soxr.ResampleStream(
                self.device_rate, self.sample_rate, 1, dtype="float32", quality=_RESAMPLE_QUALITY
            )
        try:
            stream = self._sd.InputStream(
                device=self.device,
                channels=self.channels,
                samplerate=self.device_rate,
                blocksize=self._device_block,
                dtype="float32",
                callback=self._callback,
            )
            stream.start()
        except Exception as exc:
            raise self._error(f"cannot open input stream ({_one_line(exc)})") from None
        self._stream = stream
        return self

    def close(self) -> None:
        """Stop and close the stream; iteration then ends. Safe to call more than once."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            # Abort, not stop: PortAudio's stop waits for its audio thread to finish on its
            # own (older ALSA builds drain the capture first), which through PulseAudio's
            # ALSA plugin can wait without end, a Ctrl-C that never returns; abort cancels
            # the thread and drops the unread audio, which nothing is kept for.
            # A device that vanished can make abort/close fail; there is nothing left to do.
            with contextlib.suppress(Exception):
                stream.abort()
            with contextlib.suppress(Exception):
                stream.close()

    def __enter__(self) -> Microphone:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- iteration --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        """Return the next chunk.

        Returns:
            float32 array of shape ``(block_size,)`` at :attr:`sample_rate`.

        Raises:
            StopIteration: After :meth:`close`.
            MicrophoneError: If the stream was never started, or the device delivered
                nothing for :attr:`timeout` seconds.
        """
        while True:
            if self._closed:
                raise StopIteration
            if self._stream is None:
                raise self._error("not started (use 'with Microphone() as mic:' or start())")
            out = self._rebuffer.pop()
            if out is not None:
                return out
            try:
                wait = self.timeout if self._delivered else self.startup_timeout
                data = self._queue.get(timeout=wait)
                self._delivered = True
            except queue.Empty:
                if not self._delivered:
                    problem = f"audio device delivered no audio within {wait:g} s"
                    raise self._error(problem) from None
                raise self._error("audio device stopped delivering") from None
            mono = _mixdown(data.reshape(data.shape[0], -1))
            if self._resampler is not None:
                mono = self._resampler.resample_chunk(mono, last=False)
            self._rebuffer.add(mono)
