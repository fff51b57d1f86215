"""Training throughput in clips/s, stage by stage, against a plain reference loop.

One run measures, on this machine (CPU, or a GPU with ``--device cuda``):

* ``loader``: the recipe's training loader alone (packed int16 cache, or WAV files);
* ``features``: MFCC, normalisation and SpecAugment on batches on the device;
* ``model step``: forward, loss, backward and optimizer step on ready features;
* ``full step``: loader + waveform augmentation on the device + the whole training step,
  as the recipe runs it;
* ``reference``: a plain loop: a Dataset that reads each WAV file with soundfile and
  computes its MFCCs one clip at a time, a DataLoader without workers, the same model
  at the same precision;

and prints the full step's speed-up over the reference. It also counts the matrix
products of one model step (``torch.utils.flop_counter``) and times a large matrix
product on the device at the same precision: the model step can run no faster than
that rate allows, whatever the input pipeline or GRU kernel, and the tool prints that
ceiling::

    python tools/bench_train.py --data data/test_v0.02
    python tools/bench_train.py --data DIR --device cuda --precision bf16-mixed --batch 512

Throughput does not depend on what the clips say, so on a machine without the dataset
``--synthetic N`` first writes N one-second noise clips in the Speech Commands layout
(the ten command words and two others, 200 speakers) to ``--data`` (or a temporary
folder), and measures on those::

    python tools/bench_train.py --synthetic 30000 --data /tmp/sc --device cuda \
        --precision bf16-mixed --batch 512 --workers 12
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset


def timed(fn: Callable[[], int], seconds: float, warmup: int = 2) -> float:
    """Clips per second of ``fn`` (which returns clips done), run for about ``seconds``."""
    for _ in range(warmup):
        fn()
    sync()
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        clips += fn()
    sync()
    return clips / (time.perf_counter() - start)


def matmul_rate(device: torch.device, autocast, seconds: float, n: int = 2048) -> float:
    """FLOP/s of an ``n`` x ``n`` matrix product on ``device`` under ``autocast``."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def product() -> int:
        with autocast:
            a @ b
        return 1

    return 2 * n**3 * timed(product, seconds)


def model_step_flops(module: torch.nn.Module, feats, lengths, target) -> int:
    """FLOPs of one forward and backward pass, counting matrix products only.

    Counted on a CPU copy: there the GRU runs as matrix products the counter sees, where
    on a GPU it is one cuDNN call the counter does not know.
    """
    from torch.utils.flop_counter import FlopCounterMode

    module = copy.deepcopy(module).cpu()
    with FlopCounterMode(display=False) as counter:
        logits = module.model.classify(feats.cpu(), lengths.cpu())["logits"]
        module.loss(logits, target.cpu()).backward()
    return counter.get_total_flops()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class ReferenceDataset(Dataset):
    """The plain way: read a WAV with soundfile, pad, compute its MFCCs, per item."""

    def __init__(self, files: list[Path], labels: list[int], frontend: torch.nn.Module):
        self.files, self.labels, self.frontend = files, labels, frontend

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        wave, _ = sf.read(self.files[i], dtype="float32")
        wave = np.pad(wave[:16000], (0, max(0, 16000 - wave.size)))
        with torch.no_grad():
            feats = self.frontend(torch.from_numpy(wave)[None])[0]  # (T, F)
        return feats, self.labels[i]


V2_TRAINING_CLIPS = 84_843  # Speech Commands v0.02's training split
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "cat")


def write_noise_dataset(root: Path, clips: int, seed: int = 0) -> None:
    """``clips`` one-second 16 kHz int16 noise clips under ``root/WORD/SPEAKER_nohash_K.wav``
    (plus a background-noise file), unless ``root`` already holds that many."""
    from speech_gru.core.audio import write_wav

    if len(list(root.glob("*/*_nohash_*.wav"))) == clips:
        return
    rng = np.random.default_rng(seed)
    noise = root / "_background_noise_"
    noise.mkdir(parents=True, exist_ok=True)
    write_wav(noise / "noise.wav", rng.normal(0, 0.1, 16000 * 30))

    def write(i: int) -> None:
        word, speaker = WORDS[i % len(WORDS)], f"{i // len(WORDS) % 200:08x}"
        path = root / word / f"{speaker}_nohash_{i // (len(WORDS) * 200)}.wav"
        write_wav(path, np.random.default_rng((seed, i)).normal(0, 0.1, 16000))

    for word in WORDS:
        (root / word).mkdir(exist_ok=True)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(clips)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder (folder layout)")
    parser.add_argument(
        "--synthetic", type=int, metavar="N", help="first write N noise clips to --data"
    )
    parser.add_argument("--config", default="recipes/speech_commands/conf/folder.yaml")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="32", choices=("32", "bf16-mixed"))
    parser.add_argument("--batch", type=int, help="clips per batch (default: the config's)")
    parser.add_argument("--workers", type=int, help="loader workers (default: the config's)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per measurement")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)
    if args.synthetic:
        args.data = args.data or tempfile.mkdtemp(prefix="speech_gru_noise_")
        write_noise_dataset(Path(args.data), args.synthetic)
    elif not args.data:
        parser.error("give --data DIR, or --synthetic N to measure on generated clips")

    import yaml

    from speech_gru.train.data import SpeechCommandsDataModule
    from speech_gru.train.lit import KeywordSpotter

    config = yaml.safe_load(Path(args.config).read_text())
    data_cfg = {**config.get("data", {}), "root": args.data}
    if args.batch:
        data_cfg["batch_size"] = args.batch
    if args.workers is not None:
        data_cfg["num_workers"] = args.workers
    device = torch.device(args.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision != "32")

    # the recipe's data path, packed once into a temporary cache
    pack_dir = Path(tempfile.mkdtemp(prefix="speech_gru_pack_"))
    dm = SpeechCommandsDataModule(**data_cfg, pack_dir=str(pack_dir))
    dm.pack(progress=False)
    dm.setup()
    module = KeywordSpotter(labels=dm.labels, **config.get("model", {})).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    module.log = lambda *a, **k: None  # no trainer attached
    batch_size = dm.hparams.batch_size
    results: dict[str, float] = {}

    def measure(name: str, fn: Callable[[], int], seconds: float) -> None:
        results[name] = timed(fn, seconds)
        print(f"{name}: {results[name]:,.0f} clips/s", flush=True)

    loader = dm.train_dataloader()

    def loader_pass() -> Callable[[], int]:
        iterator = iter(loader)

        def step() -> int:
            nonlocal iterator
            try:
                wave, _ = next(iterator)
            except StopIteration:
                iterator = iter(loader)
                wave, _ = next(iterator)
            return len(wave)

        return step

    measure("loader (packed)", loader_pass(), args.seconds)

    wave = torch.randn(batch_size, 16000, device=device) * 0.1
    target = torch.randint(0, len(dm.labels), (batch_size,), device=device)

    def features() -> int:
        with torch.no_grad(), autocast:
            module.model.features(wave)
        return batch_size

    measure("features", features, args.seconds / 2)
    with torch.no_grad():
        feats, lengths = module.model.features(wave)

    def model_step() -> int:
        with autocast:
            logits = module.model.classify(feats, lengths)["logits"]
            loss = module.loss(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return batch_size

    measure("model step", model_step, args.seconds)
    step_flops = model_step_flops(module, feats, lengths, target)
    peak = matmul_rate(device, autocast, args.seconds / 4)

    class Trainer:  # what on_after_batch_transfer reads of a trainer
        training = True
        global_rank = 0

        class fit_loop:  # noqa: N801
            class epoch_loop:  # noqa: N801
                class batch_progress:  # noqa: N801
                    class total:  # noqa: N801
                        ready = 0

    dm.trainer = Trainer()
    iterator = iter(loader)

    def full() -> int:
        nonlocal iterator
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        batch = [t.to(device, non_blocking=True) for t in batch]
        batch = dm.on_after_batch_transfer(batch, 0)
        Trainer.fit_loop.epoch_loop.batch_progress.total.ready += 1
        with autocast:
            loss = module.training_step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(batch[1])

    measure("full step", full, args.seconds)

    train = dm.datasets["training"]
    files = [c.path for c in train.clips if c.path is not None]
    labels = [c.label for c in train.clips if c.path is not None]
    reference = DataLoader(
        ReferenceDataset(files, labels, copy.deepcopy(module.model.frontend).cpu()),
        batch_size=batch_size, shuffle=True, num_workers=0,
    )  # fmt: skip
    ref_iter = iter(reference)

    def reference_step() -> int:
        nonlocal ref_iter
        try:
            feats, target = next(ref_iter)
        except StopIteration:
            ref_iter = iter(reference)
            feats, target = next(ref_iter)
        feats, target = feats.to(device), target.to(device)
        lengths = torch.full((len(feats),), feats.shape[1], device=device)
        valid = torch.ones(feats.shape[:2], dtype=torch.bool, device=device)
        with autocast:
            logits = module.model.classify(module.model.norm(feats, valid), lengths)["logits"]
            loss = module.loss(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(target)

    measure("reference loop", reference_step, args.seconds)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"\n{name} ({torch.get_num_threads()} threads), precision {args.precision}, "
        f"batch {batch_size}, {dm.hparams.num_workers} loader workers, "
        f"model {module.model.config.cell} {module.model.config.num_layers}x"
        f"{module.model.config.hidden_size}"
    )
    print("| stage | clips/s |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} |")
    speedup = results["full step"] / results["reference loop"]
    print(f"\nfull step vs reference loop: {speedup:.2f}x")
    print(  # the full step runs the model step too, so no input pipeline can beat this
        f"model step alone vs reference loop: "
        f"{results['model step'] / results['reference loop']:.2f}x (the most a faster input "
        f"pipeline can gain with this model on this device)"
    )
    print(
        f"a Speech Commands v2 training epoch ({V2_TRAINING_CLIPS:,} clips) at the full "
        f"step's rate: {V2_TRAINING_CLIPS / results['full step']:.1f} s; loader alone "
        f"{results['loader (packed)'] / results['full step']:.1f}x the full step's rate"
    )
    per_clip = step_flops / batch_size
    ceiling = peak / per_clip  # clips/s if every product ran at the large product's rate
    print(
        f"model step: {per_clip / 1e9:.3f} GFLOP per clip in matrix products, run at "
        f"{results['model step'] * per_clip / 1e9:,.0f} GFLOP/s; a 2048x2048 product runs at "
        f"{peak / 1e9:,.0f} GFLOP/s here, so this model's step cannot exceed {ceiling:,.0f} "
        f"clips/s on this device ({ceiling / results['reference loop']:.2f}x the reference loop)"
    )
    if args.json:
        extra = {"speedup": speedup, "step_gflop_per_clip": per_clip / 1e9}
        extra |= {"matmul_gflops": peak / 1e9, "compute_ceiling": ceiling}
        Path(args.json).write_text(json.dumps({**results, **extra}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
