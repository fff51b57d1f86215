"""Who may reach ``speech-gru serve``, and how fast a stream may send.

``HostGuard`` is an ASGI middleware in front of every HTTP request and WebSocket: the
``Host`` header must name one of the allowed hosts (the loopback names and addresses, the
address the server is bound to, and any ``--allow-host``), and an ``Origin``, when a
browser sends one, must be the page's own: the same scheme, host and port. A page on a
rebinding domain (``evil.example`` resolving to 127.0.0.1) sends ``Host: evil.example``,
which is not allowed; a page of another site, or of the same host over another scheme or
port, sends an ``Origin`` that is not the page's.

``RealTime`` holds one stream to real time: audio is let through as fast as a microphone
produces it, plus a small burst, and a client that sends faster waits for its allowance,
and one still further ahead is closed, so a flood costs the server no more than a
real-time stream, and not for long.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Hosts always allowed: a browser on this machine reaches the server by these names."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_PORTS = {"http": 80, "https": 443}

MAX_UPLOAD_SECONDS = 300.0
"""Longest audio ``/api/transcribe`` takes, by its header (a compressed file of a few KB
can hold hours)."""

IDLE_TIMEOUT_S = 30.0
"""A stream that sends no audio for this long is closed."""

BURST_S = 1.0
"""Audio a stream may send ahead of real time before its messages are read more slowly."""

MAX_WAIT_S = 2.0
"""Longest a stream is held back for real time, message after message; a client held
back longer is flooding and is closed."""


class RefusedError(Exception):
    """A request that is not let in; ``status`` and the one-line ``str()`` answer it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def host_name(host: str) -> str:
    """The name a ``--host``/``--allow-host`` value is matched by: lower case, an IPv6
    address without brackets (``[::1]`` -> ``::1``)."""
    return host.strip().lower().removeprefix("[").removesuffix("]")


def _split_host(value: str) -> tuple[str, int | None]:
    """``Host`` header -> (name, port or None). Raises ValueError when it is no host."""
    if not value or any(c in value for c in "/?#@ \\") or not value.isprintable():
        raise ValueError(value)
    parts = urlsplit("//" + value)
    name, port = parts.hostname, parts.port  # .port raises ValueError on a bad port
    if not name:
        raise ValueError(value)
    return name, port


class HostGuard:
    """ASGI middleware: lets in a request or WebSocket only when its ``Host`` is allowed
    and its ``Origin`` (when sent) is the page's own origin.

    RefusedError HTTP requests get a JSON ``{"error": "one line"}`` (400 for the host, 403 for
    the origin); a refused WebSocket is closed before it opens (code 1008). Lifespan
    messages pass through.

    Args:
        app: the application behind it.
        allowed: host names allowed in ``Host`` (``host_name`` form); the loopback ones
            are always added.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(h) for h in (*LOOPBACK_HOSTS, *allowed) if h)

    def check(self, scope: Scope) -> None:
        """Raise ``RefusedError`` unless ``scope``'s Host and Origin headers may come in."""
        headers = {}
        for key, value in scope.get("headers", ()):
            name = key.decode("latin-1").lower()
            if name in ("host", "origin"):
                if name in headers:  # two Host headers: which one would a proxy believe?
                    raise RefusedError(400, f"more than one {name.title()} header")
                headers[name] = value.decode("latin-1")
        host = headers.get("host", "")
        try:
            name, port = _split_host(host)
        except ValueError:
            raise RefusedError(400, f"Host {host[:80]!r} is not a host name") from None
        if name not in self.allowed:
            raise RefusedError(
                400,
                f"Host {host[:80]!r} is not served here (serve --allow-host {name[:60]} "
                "to allow it)",
            )
        origin = headers.get("origin")
        if origin is None:  # not sent by a browser page of another origin
            return
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        if not self.same_origin(origin, scheme, name, port):
            raise RefusedError(
                403, f"origin {origin[:80]!r} is not this page's ({scheme}://{host})"
            )

    @staticmethod
    def same_origin(origin: str, scheme: str, name: str, port: int | None) -> bool:
        """Whether ``origin`` is ``scheme://name:port``, default ports filled in."""
        try:
            parts = urlsplit(origin)
            theirs = parts.port
        except ValueError:
            return False
        if parts.scheme != scheme or parts.hostname != name or parts.path not in ("", "/"):
            return False
        default = DEFAULT_PORTS[scheme]
        return (theirs or default) == (port or default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            self.check(scope)
        except RefusedError as err:
            await _refuse(scope, receive, send, err)
            return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, err: RefusedError) -> None:
    message = " ".join(str(err).split())
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RealTime:
    """One stream's allowance of samples: ``rate`` a second, at most ``burst`` ahead.

    A token bucket that starts full: ``take(n, now)`` spends ``n`` samples and answers
    how long to wait before reading the next message (0 while the stream keeps to real
    time). The allowance is spent even when it runs short, so a client that sends faster
    than real time is read at real time; ``held`` adds up its waits while they last.

    Args:
        rate: samples a second (the stream's sample rate).
        burst: samples a client may send ahead of real time.
        now: the clock at the stream's start.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = self.burst
        self.time = now
        self.held = 0.0  # seconds held back over the messages since one that was not

    def take(self, samples: int, now: float) -> float:
        """Spend ``samples``; seconds to wait before the stream's next message."""
        self.tokens = min(self.burst, self.tokens + (now - self.time) * self.rate) - samples
        self.time = now
        wait = max(0.0, -self.tokens / self.rate)
        # a client at real time is held back now and then (frames that came bunched);
        # one held back message after message is sending faster than real time
        self.held = self.held + wait if wait > 0 else 0.0
        return wait
