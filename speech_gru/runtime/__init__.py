"""Layer 2, running a model: the model file, loading, the detector, audio sources, export.

Imports only ``core``; never Lightning.
"""
