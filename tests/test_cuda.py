"""On a CUDA device: features, waveform augmentation and bf16 training run on the GPU and
give what the CPU gives. Skipped on machines without one."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from speech_gru.core.model import KeywordModel, ModelConfig
from speech_gru.train.training import main
from tests.helpers import LABELS, augmenting_datamodule, tone_folder, train_args, training_trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SR = 16000
TONES = {"yes": 300.0, "no": 550.0, "up": 900.0, "down": 1400.0, "cat": 2200.0}


@pytest.mark.parametrize("form", ["fft", "dft"])
def test_features_on_cuda_match_the_cpu(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = KeywordModel(ModelConfig(num_classes=3, hidden_size=8, num_layers=1)).eval()
    if form == "dft":  # the export form: a strided Conv, which cuDNN runs in TF32 by default
        model.frontend.use_dft()
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    wave = 0.1 * torch.randn(8, SR)
    lengths = torch.tensor([SR] * 4 + [12000] * 4)
    on_cpu, frames_cpu = model.features(wave, lengths)
    gpu_model = copy.deepcopy(model).cuda()
    mfcc_gpu, mfcc_cpu = gpu_model.frontend(wave.cuda()).cpu(), model.frontend(wave)
    torch.testing.assert_close(mfcc_gpu, mfcc_cpu, atol=1e-2, rtol=1e-4)  # dB-scale values
    with torch.autocast("cuda", dtype=torch.bfloat16):  # as the bf16-mixed recipe runs
        on_gpu, frames_gpu = gpu_model.features(wave.cuda(), lengths.cuda())
    assert on_gpu.is_cuda and on_gpu.dtype == torch.float32
    assert torch.equal(frames_gpu.cpu(), frames_cpu)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-3, rtol=1e-3)


def test_waveform_augmentation_runs_on_the_batch_device() -> None:
    dm = augmenting_datamodule()
    dm.trainer = training_trainer(0)
    wave = torch.sin(2 * torch.pi * 440 * torch.arange(SR) / SR).repeat(4, 1).cuda()
    target = torch.arange(4).cuda()
    out, out_target = dm.on_after_batch_transfer((wave, target), 0)
    assert out.is_cuda and out.shape == wave.shape and torch.equal(out_target, target)
    assert not torch.equal(out, wave)


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_recipe_trains_on_the_gpu(precision: str, tmp_path: Path) -> None:
    root = tone_folder(tmp_path / "data", TONES, speakers=30, burst=True)
    run_dir = tmp_path / "run"
    main(
        train_args(
            root, run_dir,
            "--trainer.accelerator", "gpu",
            "--trainer.precision", precision,
            "--trainer.max_epochs", "12",
            "--data.num_workers", "2",
        )
    )  # fmt: skip
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test/clips"] > 0
    assert results["test/acc"] > 0.9, results  # four tones and one other are easy to tell apart
    assert (run_dir / "labels.txt").read_text().split() == LABELS
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    weights = [w for w in ckpt["state_dict"].values() if w.is_floating_point()]
    assert weights and all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights)
