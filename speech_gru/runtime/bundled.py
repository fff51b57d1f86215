"""The models that ship inside the package, so that a keyword is heard right after install.

Each bundled model is a slim training checkpoint (weights, settings, operating point; no
optimizer state) in ``speech_gru/models/NAME.ckpt`` beside its card: ``NAME.json`` (what
``speech-gru models`` lists: labels, sizes, the operating point and the measured figures,
each with the command that produced it) and ``NAME.md`` (the card for people: data and
licence, the training command, what the model is not for). A checkpoint is read
weights-only, so a bundled model carries no code. Every command that takes
``--checkpoint`` and ``Spotter.load()`` use ``DEFAULT`` when no model is named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speech_gru.runtime.checkpoint import ModelLoadError

MODELS = Path(__file__).resolve().parents[1] / "models"
"""The package's folder of bundled models and their cards."""

DEFAULT = "keywords12"
"""The model used when none is named: the ten Speech Commands keywords, with
``_unknown_`` and ``_silence_``."""


@dataclass(frozen=True)
class BundledModel:
    """A model that ships with the package.

    Attributes:
        name: its name (``keywords12``).
        path: the checkpoint.
        card: the machine-readable card (``NAME.json``).
    """

    name: str
    path: Path
    card: dict[str, Any]

    @property
    def card_text(self) -> Path:
        """The card for people (``NAME.md``)."""
        return self.path.with_suffix(".md")


def bundled_models() -> list[BundledModel]:
    """Every bundled model with its card, by name."""
    found = []
    for card in sorted(MODELS.glob("*.json")):
        path = card.with_suffix(".ckpt")
        if path.is_file():
            found.append(BundledModel(card.stem, path, json.loads(card.read_text())))
    return found


def bundled_model(name: str = DEFAULT) -> BundledModel:
    """The bundled model called ``name``.

    Raises:
        ModelLoadError: no such model ships with this installation, in one line.
    """
    for model in bundled_models():
        if model.name == name:
            return model
    names = ", ".join(m.name for m in bundled_models()) or "none"
    raise ModelLoadError(f"no bundled model {name!r} in {MODELS} (bundled: {names})")


def is_bundled(path: str | Path) -> bool:
    """Whether ``path`` is one of the package's own model files (never written to)."""
    try:
        return Path(path).resolve().parent == MODELS.resolve()
    except OSError:
        return False
