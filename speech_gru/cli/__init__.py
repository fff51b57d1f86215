"""Layer 5, what people run: the ``speech-gru`` commands, ``serve`` and its page, the live
terminal view, ``record``, and the Python API.

Imports every layer below it; nothing imports it but ``speech_gru/__init__.py``.
"""
