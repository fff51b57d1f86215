"""Layer 1, the foundations: label sets, audio files, MFCC features, the model and its cells.

Imports nothing of the other layers and never Lightning.
"""
