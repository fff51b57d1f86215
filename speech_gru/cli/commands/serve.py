"""``speech-gru serve``: a local web page that listens to the browser's microphone (and
takes uploads); the server itself is ``speech_gru.cli.serve``."""

from __future__ import annotations

import argparse
import os
import sys

from speech_gru.cli.guard import IDLE_TIMEOUT_S, MAX_UPLOAD_SECONDS
from speech_gru.cli.options import (
    CliError,
    add_detector_arguments,
    add_model_argument,
    load_runtime,
    non_negative_int,
    operating_point_line,
    positive_float,
    positive_int,
)
from speech_gru.runtime.factory import LIVE_BATCH_WINDOWS


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="a local web page that listens to the browser's microphone",
        description="Serve a page that streams the browser's microphone to the detector "
        "(the same settings and operating point as stream) and shows each keyword's score, "
        "the threshold and the detected keywords live; it also transcribes uploaded files.",
    )
    add_model_argument(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (browsers give the microphone only to https "
        "pages and to localhost)",
    )
    p.add_argument("--port", type=non_negative_int, default=8000, help="port (0: any free one)")
    add_detector_arguments(p)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads per model run")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=min(4, os.cpu_count() or 1),
        help="model threads; a turn of many streams is shared among them",
    )
    p.add_argument(
        "--max-clients",
        type=positive_int,
        default=64,
        help="streams served at once; more are refused with a message",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the page may be reached by besides localhost, 127.0.0.1, [::1] "
        "and --host (repeatable); requests naming any other Host are refused",
    )
    p.add_argument(
        "--max-upload-seconds",
        type=positive_float,
        default=MAX_UPLOAD_SECONDS,
        help="longest audio an uploaded file may hold (by its header); longer is refused",
    )
    p.add_argument(
        "--idle-timeout",
        type=positive_float,
        default=IDLE_TIMEOUT_S,
        help="seconds a stream may go without sending audio before it is closed",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from speech_gru.cli.serve import ServeError, Settings, serve

    torch.set_num_threads(args.threads)  # one window at a time, as in stream
    runtime = load_runtime(args, LIVE_BATCH_WINDOWS)
    classifier, config = runtime.classifier, runtime.config
    origin = operating_point_line(args, config, classifier)
    print(origin, file=sys.stderr, flush=True)
    settings = Settings(
        classifier,
        config,
        args.workers,
        max_clients=args.max_clients,
        origin=origin,
        max_upload_seconds=args.max_upload_seconds,
        idle_timeout_s=args.idle_timeout,
        allowed_hosts=tuple(args.allow_host),
    )

    def announce(url: str) -> None:
        print(
            f"serving on {url} (open it in a browser; Ctrl-C to stop)", file=sys.stderr, flush=True
        )

    try:
        serve(settings, args.host, args.port, announce)
    except ServeError as err:
        raise CliError(str(err)) from None
    except KeyboardInterrupt:  # uvicorn stops cleanly, then raises the Ctrl-C it caught
        pass
    print("stopped", file=sys.stderr)
    return 0
