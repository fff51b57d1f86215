"""Train and test a keyword spotter: ``python train.py fit --config conf/v2_12.yaml``.

All settings live in ``conf/*.yaml`` and on the command line (LightningCLI); see README.md.
A model for a longer phrase hears longer windows: ``--model.window_s 1.6`` (0.5 to 3 s)
cuts every clip to 1.6 s and is stored with the model for the detector and the exports.
"""

from speech_gru.train.training import main

if __name__ == "__main__":
    main()
