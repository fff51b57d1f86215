"""Speaker-disjoint k-fold cross-validation of the recipe (see speech_gru.crossval)."""

import sys

from speech_gru.crossval import main

if __name__ == "__main__":
    sys.exit(main())
