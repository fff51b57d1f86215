"""Export a trained model for deployment: TorchScript or ONNX, optionally int8.

The exported model is self-contained: raw 16 kHz waveforms ``(B, N)`` in, class
probabilities ``(B, C)`` out, MFCCs included. The label list travels with it (TorchScript:
the extra file ``labels.json``; ONNX: the metadata entry ``labels``), so it runs with plain
``torch.jit.load`` or ``onnxruntime`` and no ``speech_gru`` package::

    model = torch.jit.load("kws.pt", _extra_files=(extra := {"labels.json": ""}))
    labels = json.loads(extra["labels.json"])
    probs = model(wave)                                    # (B, N) float32 -> (B, C)

    session = onnxruntime.InferenceSession("kws.onnx")
    labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
    probs = session.run(None, {"waveform": wave.numpy()})[0]
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from speech_gru import __version__
from speech_gru.model import KeywordModel

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17


class WaveformClassifier(nn.Module):
    """A KeywordModel for inference: (B, N) waveforms -> (B, C) probabilities.

    All clips in a batch have the same length (no padding masks), which keeps the graph
    simple enough for TorchScript and ONNX.
    """

    def __init__(self, model: KeywordModel) -> None:
        super().__init__()
        self.frontend = model.frontend
        self.norm = model.norm
        self.encoder = model.encoder
        self.pool = model.pool
        self.head = model.head

    def forward(self, waveform: Tensor) -> Tensor:
        feats = self.frontend(waveform)  # (B, T, F)
        mask = torch.ones(feats.shape[0], feats.shape[1], dtype=torch.bool, device=feats.device)
        states = self.encoder(self.norm(feats, mask))[0]  # (B, T, 2H)
        pooled, _ = self.pool(states, mask)  # (B, 2H)
        return self.head(pooled).softmax(-1)  # (B, C)


def quantize_int8(module: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of the recurrent and linear layers (weights int8,
    activations quantized on the fly); the MFCC frontend stays float32."""
    with warnings.catch_warnings():  # torch.ao announces the deprecation of its qint8 tensors
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(
            module, {nn.GRU, nn.LSTM, nn.Linear}, dtype=torch.qint8
        )


def metadata(labels: list[str], hyper_parameters: dict) -> dict[str, str]:
    return {
        "labels": json.dumps(labels),
        "sample_rate": "16000",
        "input": "waveform: float32 (batch, samples) at 16 kHz, mono, in [-1, 1]",
        "output": "probabilities: float32 (batch, labels)",
        "speech_gru_version": __version__,
        "hyper_parameters": json.dumps(hyper_parameters, default=str),
    }


def export_torchscript(
    wrapper: WaveformClassifier, path: Path, meta: dict[str, str], quantize: bool
) -> None:
    module = quantize_int8(wrapper) if quantize else wrapper
    with warnings.catch_warnings():  # TorchScript announces its own deprecation
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(module)
    extra = {"labels.json": meta["labels"], "metadata.json": json.dumps(meta)}
    torch.jit.save(scripted, str(path), _extra_files=extra)


def export_onnx(
    wrapper: WaveformClassifier, path: Path, meta: dict[str, str], quantize: bool
) -> None:
    import onnx

    wrapper.frontend.use_dft()  # one Conv: ONNX Runtime's STFT is ten times slower
    example = torch.zeros(1, 16000)
    target = path.with_name(path.stem + ".fp32.onnx") if quantize else path
    torch.onnx.export(
        wrapper,
        (example,),
        str(target),
        input_names=["waveform"],
        output_names=["probabilities"],
        dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "probabilities": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        frontend = [n.name for n in onnx.load(str(target)).graph.node if "/frontend/" in n.name]
        quantize_dynamic(  # the MFCC frontend stays float32, as in TorchScript's int8
            str(target), str(path), weight_type=QuantType.QInt8, nodes_to_exclude=frontend
        )
        target.unlink()
    model = onnx.load(str(path))
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def export(
    checkpoint: str | Path, out: str | Path, fmt: str = "torchscript", quantize: bool = False
) -> Path:
    """Write a self-contained model file from a training checkpoint.

    Args:
        checkpoint: a checkpoint of the training recipe.
        out: the file to write (parent folders are created).
        fmt: ``"torchscript"`` or ``"onnx"``.
        quantize: int8 dynamic quantization of the recurrent and linear layers.

    Returns:
        The written path.
    """
    from speech_gru.infer import load_checkpoint_model

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    model, labels, loaded = load_checkpoint_model(checkpoint)
    wrapper = WaveformClassifier(model).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata(labels, dict(loaded["hyper_parameters"]))
    with torch.no_grad():
        if fmt == "torchscript":
            export_torchscript(wrapper, out, meta, quantize)
        else:
            export_onnx(wrapper, out, meta, quantize)
    return out
