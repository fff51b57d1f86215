"""speech_gru: keyword spotting with MFCC features and a bidirectional GRU."""

__version__ = "0.1.0"
