"""Layer 4, judging a model: clip evaluation, streaming evaluation, calibration, explain,
gradients, the model card.

Imports ``core``, ``runtime`` and ``train``.
"""
