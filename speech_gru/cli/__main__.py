"""``python -m speech_gru.cli``: the ``speech-gru`` command."""

import sys

from speech_gru.cli.main import main

sys.exit(main())
