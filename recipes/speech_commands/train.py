"""Train and test a keyword spotter: ``python train.py fit --config conf/v2_12.yaml``.

All settings live in ``conf/*.yaml`` and on the command line (LightningCLI); see README.md.
"""

from speech_gru.train.training import main

if __name__ == "__main__":
    main()
