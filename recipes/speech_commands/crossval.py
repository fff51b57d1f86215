"""Speaker-disjoint k-fold cross-validation of the recipe (see speech_gru.train.crossval)."""

import sys

from speech_gru.train.crossval import main

if __name__ == "__main__":
    sys.exit(main())
