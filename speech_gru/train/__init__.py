"""Layer 3, making a model: the corpus rules, synthetic speakers, data, augmentation,
download, packs, the Lightning module and the training command.

Imports ``core`` and ``runtime``; Lightning enters the package here.
"""
