"""Streaming detection quality: ``speech-gru evaluate-stream``, kept under its old name.

The recording builder, truth files, matching, DET curves and plots live in
``speech_gru/analysis/stream_eval.py``; this script passes its arguments to the command, whose
``--help`` lists them.

Example:
    python tools/eval_stream.py --checkpoint runs/x/checkpoints/best.ckpt \\
        --clips data/speech_commands_v2_dev --split testing --minutes 10 \\
        --det det.png --json stream.json
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from speech_gru.cli.main import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``speech-gru evaluate-stream`` with ``argv`` (default: this script's arguments)."""
    return cli_main(["evaluate-stream", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
