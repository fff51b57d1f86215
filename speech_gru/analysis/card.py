"""The model card: what a checkpoint or an exported model says about itself.

``model_card`` collects labels, feature settings, architecture, parameter counts, training
data, test accuracy and the calibrated operating point, for ``speech-gru info``;
``format_card`` lays it out as text. The architecture is rebuilt from the stored config
as a plain ``KeywordModel``: no Lightning. What the files hold is read through
``speech_gru.runtime.checkpoint``.
"""

from __future__ import annotations

import json
from pathlib import Path

from speech_gru.core.audio import printable
from speech_gru.core.labels import LABEL_SETS
from speech_gru.core.model import KeywordModel, ModelConfig
from speech_gru.runtime.checkpoint import (
    CLASSES,
    DATA_SETTINGS,
    HYPER_PARAMETERS,
    OPERATING_POINT,
    TEST_METRICS,
    VERSION,
    WINDOW_S,
    ModelLoadError,
    OperatingPoint,
    load_checkpoint_model,
    model_kind,
    read_operating_point,
    runs_code,
)
from speech_gru.runtime.classifier import load_classifier


def label_set_name(labels: list[str], version: str | None = None) -> str:
    """The name of a built-in label set equal to ``labels``, else ``"custom"``."""
    names = [name for name, members in LABEL_SETS.items() if list(members) == list(labels)]
    if version == "v0.01":
        names.sort(key=lambda name: not name.startswith("v1"))
    return names[0] if names else "custom"


def parameter_counts(model: KeywordModel) -> dict[str, int]:
    """Trainable numbers per part; the MFCC frontend and feature norm hold only buffers."""
    parts = {"frontend": model.frontend, "norm": model.norm, "encoder": model.encoder,
             "pooling": getattr(model, "pool", None), "head": model.head}  # fmt: skip
    if model.stem is not None:
        parts["stem"] = model.stem
    counts = {
        name: sum(p.numel() for p in part.parameters()) if part is not None else 0
        for name, part in parts.items()
    }
    return {"total": model.num_parameters(), **counts}


def describe_model(model: KeywordModel) -> tuple[dict, dict]:
    """(features, architecture) sections of a model card."""
    c = model.config
    f = c.features
    features = {
        "sample_rate": f.sample_rate, "n_fft": f.n_fft, "hop_length": f.hop_length,
        "n_mels": f.n_mels, "n_mfcc": f.n_mfcc, "f_min": f.f_min, "f_max": f.f_max,
        "feature_norm": c.feature_norm,
    }  # fmt: skip
    architecture = {
        "cell": c.cell, "num_layers": c.num_layers, "hidden_size": c.hidden_size,
        "bidirectional": bool(model.encoder.bidirectional), "attention_dim": c.attention_dim,
        "dropout": c.dropout,
    }  # fmt: skip
    if c.conv_stem:
        architecture.update(conv_stem=c.conv_stem, conv_kernel=c.conv_kernel)
    return features, architecture


def model_card(path: str | Path, trust_torchscript: bool = False) -> dict:
    """What a checkpoint or an exported model records about itself.

    Keys: ``file``, ``kind``, ``labels``, ``window_s`` (the seconds of audio it was trained
    on and scores at a time), ``features``, ``architecture``, ``parameters``
    (per part), ``training`` (data and progress; None when not recorded), ``test_metrics``
    (None when not recorded), ``operating_point`` (the calibrated detector settings and
    how they were measured, as stored; None when not calibrated), ``speech_gru_version``,
    ``runs_code`` (whether loading the file runs code it carries: TorchScript's) and, for
    exports, ``metadata``.

    Args:
        path: the model file.
        trust_torchscript: read a TorchScript file, which loading runs code of (else it is
            refused, as every command refuses it).

    Raises:
        ModelLoadError: a missing or unreadable model file, or an untrusted TorchScript
            file.
    """
    path = Path(path)
    kind = model_kind(path)
    if kind == "checkpoint":
        model, labels, checkpoint = load_checkpoint_model(path)
        card: dict = {"file": str(path), "kind": "checkpoint", "labels": labels}
        data = checkpoint.get(DATA_SETTINGS)
        training = {"epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")}
        if data:
            training = {"root": data.get("root"), "version": data.get("version"), **training}
        training["label_set"] = label_set_name(labels, (data or {}).get("version"))
        card["training"] = training
        card["test_metrics"] = checkpoint.get(TEST_METRICS) or None
        point = read_operating_point(path, checkpoint.get(OPERATING_POINT), labels)
        card["speech_gru_version"] = checkpoint.get(VERSION)
        card["window_s"] = model.config.window_s
    else:
        classifier = load_classifier(path, trust_torchscript)
        card = {"file": str(path), "kind": classifier.kind, "labels": classifier.labels}
        meta = dict(classifier.metadata)
        hparams = meta.get(HYPER_PARAMETERS, "{}")
        hparams = json.loads(hparams) if isinstance(hparams, str) else dict(hparams)
        model = export_model(path, hparams, len(classifier.labels))
        card["training"] = None
        card["test_metrics"] = None
        point = classifier.operating_point
        card["speech_gru_version"] = meta.get(VERSION)
        card["window_s"] = classifier.window_s
        card["metadata"] = {
            k: v
            for k, v in meta.items()
            if k not in ("labels", CLASSES, HYPER_PARAMETERS, VERSION, OPERATING_POINT, WINDOW_S)
        }
    card["runs_code"] = runs_code(kind)
    card["operating_point"] = point.to_dict() if point is not None else None
    card["features"], card["architecture"] = describe_model(model)
    card["parameters"] = parameter_counts(model)
    return card


def export_model(path: Path, hparams: dict, num_classes: int) -> KeywordModel:
    """An untrained KeywordModel of the architecture an export's metadata records: the
    same parts and parameter counts as the exported one.

    Raises:
        ModelLoadError: hyper-parameters that do not describe a model.
    """
    try:
        return KeywordModel(ModelConfig.from_hparams(hparams, num_classes))
    except (TypeError, ValueError) as err:
        reason = " ".join(str(err).split())[:160]
        raise ModelLoadError(
            f"{path}: hyper_parameters metadata does not describe a model ({reason})"
        ) from None


def format_card(card: dict) -> str:
    """A model card as aligned text lines (control characters escaped: safe to print)."""
    f, a, p = card["features"], card["architecture"], card["parameters"]
    rate = f["sample_rate"]
    lines = [
        ("file", f"{card['file']} ({card['kind']}, speech_gru {card['speech_gru_version']})"),
        ("labels", f"{len(card['labels'])}: {' '.join(card['labels'])}"),
        (
            "window",
            f"{card['window_s']:g} s ({round(card['window_s'] * rate)} samples): the clips it "
            "was trained on, the windows it scores",
        ),
        (
            "features",
            f"{rate} Hz, n_fft {f['n_fft']} ({1000 * f['n_fft'] / rate:g} ms), "
            f"hop {f['hop_length']} ({1000 * f['hop_length'] / rate:g} ms), "
            f"{f['n_mels']} mels {f['f_min']:g}-{f['f_max']:g} Hz, {f['n_mfcc']} MFCC, "
            f"norm {f['feature_norm']}",
        ),
        (
            "architecture",
            f"{'bidirectional ' if a['bidirectional'] else ''}{a['cell'].upper()}, "
            f"{a['num_layers']} layers x {a['hidden_size']} units per direction, "
            f"attention dim {a['attention_dim']}, dropout {a['dropout']:g}",
        ),
        (
            "parameters",
            f"{p['total']:,} (encoder {p['encoder']:,}, pooling {p['pooling']:,}, "
            f"head {p['head']:,}; frontend {p['frontend']:,} and norm {p['norm']:,}: "
            "buffers only)",
        ),
    ]
    if card.get("runs_code"):
        code = "yes: TorchScript, loading it runs its code; only from a source you trust"
    else:
        code = "no: weights and settings only, safe to load from anyone"
        if card["kind"] == "onnx":
            code = "no: an ONNX graph of standard operators, safe to load from anyone"
    lines.append(("runs code", code))
    training = card.get("training")
    if training:
        data = (
            f"root {training['root']}, version {training['version']}, "
            if "root" in training
            else "data not recorded, "
        )
        lines.append(
            (
                "training",
                f"{data}label set {training['label_set']}; epoch {training['epoch']}, "
                f"step {training['global_step']}",
            )
        )
    else:
        lines.append(("training", "not recorded in exports"))
    metrics = card.get("test_metrics")
    if metrics:
        acc = metrics.get("test/acc")
        rest = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "test/acc")
        text = f"{acc:.4f}" if acc is not None else "not recorded"
        lines.append(("test accuracy", f"{text} ({rest})" if rest else text))
    else:
        lines.append(("test accuracy", "not recorded"))
    if card.get("operating_point"):
        point = OperatingPoint.from_dict(card["operating_point"])
        lines.append(("operating point", f"{point.settings_text()}; {point.provenance_text()}"))
        if point.thresholds:
            each = " ".join(f"{k} {v:.4g}" for k, v in point.thresholds.items())
            lines.append(("thresholds", each))
    else:
        lines.append(("operating point", "not calibrated (speech-gru calibrate)"))
    for key, value in (card.get("metadata") or {}).items():
        lines.append((key, str(value)))
    lines = [(printable(key), printable(value)) for key, value in lines]  # text from the file
    width = max(len(key) for key, _ in lines)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in lines)
