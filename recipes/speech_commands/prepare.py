"""Prepare a recipe's data once: download and verify, then pack every split.

Takes the same config as ``train.py`` (only its ``data`` section is used) and is safe
to re-run: a downloaded, verified and extracted archive is not fetched again, and a split
whose pack matches its files is not packed again::

    python recipes/speech_commands/prepare.py --config recipes/speech_commands/conf/v2_12.yaml
    python recipes/speech_commands/prepare.py --config conf/folder.yaml --data.root DIR \\
        --stage pack

The training loader then reads one memory-mapped int16 array per split instead of tens of
thousands of WAV files (see ``speech_gru/train/pack.py``).
"""

import sys

from speech_gru.train.prepare import main

if __name__ == "__main__":
    sys.exit(main())
