"""Speech Commands data: clip indexes, splits and the LightningDataModule.

Two sources share one code path:

* ``version="v0.02"`` or ``"v0.01"``: the official archive, downloaded and verified by
  ``speech_gru.train.download``, split by its ``validation_list.txt`` and ``testing_list.txt``;
  the 12-class test set is the separate canonical test archive.
* ``version="folder"``: any folder in the same layout (one sub-folder per word, optional
  ``_silence_``, ``_unknown_`` and ``_background_noise_``) without list files. Speakers are
  assigned to a split by hashing the speaker id, as the dataset's README prescribes, so no
  speaker is in two splits.

Every clip (and generated ``_silence_``, and every noise piece) is cut or zero-padded to
the model's window, ``window_s`` (one second by default; the recipe links it from
``model.window_s``). Loaders only read samples. Waveform augmentation (speed, time
shift, noise) runs batched on the model's device in ``on_after_batch_transfer``. The
clips and their Dataset are ``speech_gru.train.clips``; the samplers and resumable
loaders, ``speech_gru.train.loaders``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.core.labels import (
    LABEL_SETS,
    SILENCE,
    UNKNOWN,
    is_keyword,
    resolve_labels,
)
from speech_gru.core.model import DEFAULT_WINDOW_S, check_window_s
from speech_gru.train.augment import (
    NoiseBank,
    add_noise,
    cut_at_edge,
    join_words,
    shift_keeping_speech,
    speech_bounds,
    speed_perturb,
    surround_word,
    time_shift,
)
from speech_gru.train.clips import Clip, ClipDataset, readable, subsample
from speech_gru.train.corpus import (
    MAX_CLIP_S,
    SPLITS,
    FolderSurvey,
    SplitRule,
    background_noise,
    folder_labels,
    read_list,
    scan_folder,
    speaker_of,
    split_is_empty,
)
from speech_gru.train.loaders import LoaderProgress, ResumableLoader, ShardedSampler
from speech_gru.train.pack import open_pack, pack_dir_for, write_pack

log = logging.getLogger(__name__)

VERSIONS = ("v0.02", "v0.01", "folder")


class DataError(Exception):
    """The data cannot make a run: an empty folder, a split without clips. One line."""


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of one training batch on one rank, from the run's seed."""
    digest = hashlib.sha256(f"{seed}/{step}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def print_clip_counts(
    labels: list[str], counts: dict[str, dict[str, int]], speakers: dict[str, int]
) -> None:
    """The clips each label has in each split, as a table on stderr, before training."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="clips per label and split", title_justify="left")
    table.add_column("label")
    for split in counts:
        table.add_column(split, justify="right")
    for label in labels:
        table.add_row(label, *(str(counts[split].get(label, 0)) for split in counts))
    table.add_section()
    table.add_row("all", *(str(sum(counts[split].values())) for split in counts))
    table.add_row("speakers", *(str(speakers.get(split, 0)) for split in counts))
    Console(stderr=True).print(table)


class SpeechCommandsDataModule(L.LightningDataModule):
    """Speech Commands (v0.02, v0.01) or any folder in its layout.

    Args:
        root: cache folder for the official archives, or the dataset folder for
            ``version="folder"``.
        version: ``"v0.02"``, ``"v0.01"`` or ``"folder"``.
        labels: label-set name (``"v2_12"``, ``"v2_35"``, ``"v1_12"``, ``"v1_30"``),
            ``"auto"`` (a folder's sub-folder names) or a list of labels.
        download: fetch and extract missing official archives.
        batch_size: clips per batch (per device under DDP).
        num_workers: loader processes.
        validation_percent: share of speakers held out for validation (folder mode).
        testing_percent: share of speakers held out for testing (folder mode).
        split_salt: prefix of the speaker id before hashing (folder mode); ``""`` gives
            the dataset README's exact split, which puts all speakers of a folder cut from
            one official split into one bucket (see ``which_set``).
        folds: speaker-disjoint cross-validation (folder mode): with ``folds`` >= 2 the
            speakers are dealt into that many folds by a hash of their id, fold ``fold``
            is the test split, and ``validation_percent`` of the other speakers validate;
            ``testing_percent`` is then unused. 0 keeps the plain split.
        fold: the fold held out for testing, ``0 .. folds - 1``.
        silence_fraction: generated ``_silence_`` clips per keyword clip in each split,
            used when the data has no ``_silence_`` folder (official data: 0.1).
        unknown_fraction: ``_unknown_`` clips kept per keyword clip in each split; None
            keeps them all.
        noise_dir: folder of background-noise recordings; default the dataset's
            ``_background_noise_``, else its training ``_silence_`` clips, else synthetic
            white and pink noise.
        noise_prob: share of training clips mixed with background noise.
        snr_low: lowest signal-to-noise ratio of that mix, in dB.
        snr_high: highest signal-to-noise ratio, in dB.
        time_shift_ms: largest random time shift in training, in milliseconds.
        shift_anywhere: instead of ``time_shift_ms``, move each training clip's word to a
            random offset that keeps all of it in the window, as a stream's windows hold
            words at any offset.
        edge_cut_prob: share of training keyword clips slid partly out of the window
            (20-60 % of the word kept) and trained as ``_unknown_``: the half words a
            stream's window holds just before and after a keyword.
        join_prob: share of training word clips replaced by the end of their word followed
            by the start of another clip's, trained as ``_unknown_``: a window that
            straddles two words.
        context_prob: share of training keyword clips heard mid-sentence, label kept: the
            end of another clip's word just before the keyword and the start of another's
            just after (pauses of 0-150 ms), as a phrase said in running speech sounds.
        speed_low: slowest speed (and pitch) perturbation factor; 1.0 turns it off.
        speed_high: fastest perturbation factor.
        seed: seed of subsets, shuffles and generated silence (the recipe sets it from
            ``seed_everything``).
        use_pack: read clips from the packed int16 cache when one matches the split
            (``recipes/speech_commands/prepare.py`` writes it); WAV files otherwise.
        pack_dir: where packs live; default ``~/.cache/speech_gru/packs/<folder>-<hash>``.
        pin_memory: hand batches over in page-locked memory, so the copy to a GPU runs
            asynchronously; None pins when training runs on a CUDA device.
        window_s: seconds per clip, 0.5 to 3: every clip, generated ``_silence_`` and noise
            piece is cut or zero-padded to it. The recipe sets it from ``model.window_s``
            (a link, not a flag of its own), so the data always fits the model.
    """

    def __init__(
        self,
        root: str = "data/speech_commands",
        version: str = "v0.02",
        labels: list[str] | str = "v2_12",
        download: bool = True,
        batch_size: int = 128,
        num_workers: int = 2,
        validation_percent: float = 10.0,
        testing_percent: float = 10.0,
        split_salt: str = "speech_gru",
        folds: int = 0,
        fold: int = 0,
        silence_fraction: float = 0.1,
        unknown_fraction: float | None = 0.1,
        noise_dir: str | None = None,
        noise_prob: float = 0.8,
        snr_low: float = 0.0,
        snr_high: float = 20.0,
        time_shift_ms: float = 100.0,
        shift_anywhere: bool = False,
        edge_cut_prob: float = 0.0,
        join_prob: float = 0.0,
        context_prob: float = 0.0,
        speed_low: float = 1.0,
        speed_high: float = 1.0,
        seed: int = 0,
        use_pack: bool = True,
        pack_dir: str | None = None,
        pin_memory: bool | None = None,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        super().__init__()
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
        try:
            window_s = check_window_s(window_s, "data.window_s")
        except ValueError as err:
            raise DataError(str(err)) from None
        self.clip_samples = round(window_s * SAMPLE_RATE)  # per clip, at 16 kHz
        self.save_hyperparameters(ignore=["labels"])  # the model's hparams keep the labels
        if root is None:
            raise DataError(
                "data.root is not set: pass --data.root DIR, the folder of your words "
                "(one sub-folder per word)"
            )
        self.root = Path(root).expanduser()
        if labels == "auto":
            if version != "folder":
                raise DataError("data.labels auto needs data.version folder")
            if not self.root.is_dir():
                raise DataError(f"{self.root}: dataset folder not found (data.root)")
            labels = folder_labels(self.root)
        self.label_set = labels if isinstance(labels, str) and labels in LABEL_SETS else None
        try:
            self.labels = resolve_labels(labels)
        except ValueError as err:
            raise DataError(f"data.labels: {err}") from None
        self.clip_counts: dict[str, dict[str, int]] = {}
        if folds and (folds < 2 or not 0 <= fold < folds or version != "folder"):
            raise ValueError("cross-validation needs version folder, folds >= 2, 0 <= fold < folds")
        if (edge_cut_prob > 0 or join_prob > 0) and UNKNOWN not in self.labels:
            raise ValueError("edge_cut_prob and join_prob need the _unknown_ label")
        shares = (edge_cut_prob, join_prob, context_prob)
        if min(shares) < 0 or sum(shares) > 1:
            raise ValueError(
                "edge_cut_prob, join_prob and context_prob must be >= 0 and sum to at most 1"
            )
        self.datasets: dict[str, ClipDataset] = {}
        self._bank: NoiseBank | None = None
        self.train_progress = LoaderProgress()

    @property
    def label_names(self) -> list[str]:
        """The resolved label list (linked into the model by the recipe)."""
        return list(self.labels)

    # -- where the data lives ----------------------------------------------------------
    def _archive_names(self) -> list[str]:
        names = [self.hparams.version]
        if self.hparams.version != "folder" and len(self.labels) == 12:
            names.append(f"test_{self.hparams.version}")
        return names

    def data_dir(self) -> Path:
        if self.hparams.version == "folder":
            return self.root
        return self.root / self.hparams.version

    def prepare_data(self) -> None:
        """Download and extract the official archives (rank 0 only, under DDP)."""
        if self.hparams.version == "folder":
            return
        from speech_gru.train.download import fetch

        for name in self._archive_names():
            if self.hparams.download:
                fetch(name, self.root)
            elif not (self.root / name).is_dir():
                raise FileNotFoundError(
                    f"{self.root / name}: not found; set data.download true to fetch it"
                )

    # -- indexes -----------------------------------------------------------------------
    def _index(self, paths: list[tuple[Path, str]], split_of) -> dict[str, list[Clip]]:  # noqa: ANN001
        index = {name: self.labels.index(name) for name in self.labels}
        splits: dict[str, list[Clip]] = {s: [] for s in SPLITS}
        for path, label in paths:
            split = split_of(path)
            if split is not None:
                splits[split].append(Clip(path, index[label], speaker_of(path)))
        return splits

    def build_splits(self) -> dict[str, list[Clip]]:
        """The clips of each split, before silence and unknown balancing."""
        hp = self.hparams
        data_dir = self.data_dir()
        if hp.version == "folder":
            survey = self.check_folder()
            return self._index(list(survey.items), SplitRule.from_hparams(hp))
        paths = scan_folder(data_dir, self.labels)
        val = read_list(data_dir / "validation_list.txt")
        test = read_list(data_dir / "testing_list.txt")
        use_test_archive = len(self.labels) == 12

        def split_of(path: Path) -> str | None:
            rel = path.relative_to(data_dir).as_posix()
            if rel in val:
                return "validation"
            if rel in test:
                return None if use_test_archive else "testing"
            return "training"

        splits = self._index(paths, split_of)
        if use_test_archive:
            test_dir = self.root / f"test_{hp.version}"
            splits["testing"] = self._index(
                scan_folder(test_dir, self.labels), lambda p: "testing"
            )["testing"]
        return splits

    def noise_recordings(self, splits: dict[str, list[Clip]]) -> list[np.ndarray]:
        """Background noise for mixing and generated silence (see ``noise_dir``)."""
        silence = []
        if SILENCE in self.labels:
            index = self.labels.index(SILENCE)
            silence = [c.path for c in splits["training"] if c.label == index and c.path]
        noise, _ = background_noise(
            self.data_dir(), self.hparams.noise_dir, silence, seed=self.hparams.seed
        )
        return noise

    def balance(self, clips: list[Clip], split: str) -> list[Clip]:
        """Add generated silence and subsample unknown clips to the configured fractions."""
        hp = self.hparams
        special = {self.labels.index(x) for x in (SILENCE, UNKNOWN) if x in self.labels}
        keywords = sum(c.label not in special for c in clips)
        seed = hp.seed + SPLITS.index(split)
        if UNKNOWN in self.labels and hp.unknown_fraction is not None:
            unknown = self.labels.index(UNKNOWN)
            kept = subsample(
                [c for c in clips if c.label == unknown],
                math.ceil(keywords * hp.unknown_fraction),
                seed,
            )
            clips = [c for c in clips if c.label != unknown] + kept
        if SILENCE in self.labels:
            silence = self.labels.index(SILENCE)
            if not any(c.label == silence for c in clips):
                count = math.ceil(keywords * hp.silence_fraction)
                clips = clips + [Clip(None, silence, SILENCE)] * count
        return clips

    def pack_path(self) -> Path:
        if self.hparams.pack_dir:
            return Path(self.hparams.pack_dir)
        return pack_dir_for(self.data_dir())

    def pack(self, progress: bool = True) -> dict[str, int]:
        """Write the packed cache of every split whose pack (of ``window_s`` clips) is
        missing or stale.

        Returns:
            Clips packed per split (0 where a valid pack was already there).
        """
        from rich.progress import Progress

        written = {}
        pack_dir = self.pack_path()
        with Progress(disable=not progress) as bar:
            for split, clips in self.build_splits().items():
                files = [c.path for c in clips if c.path is not None]
                if open_pack(pack_dir, split, files, self.clip_samples) is not None:
                    written[split] = 0
                    continue
                task = bar.add_task(f"packing {split}", total=len(files))
                advance = functools.partial(bar.advance, task)
                _, errors = write_pack(pack_dir, split, files, advance, self.clip_samples)
                for error in errors:
                    log.warning("left out of the pack: %s", error["error"])
                written[split] = len(files) - len(errors)
        return written

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self._build_datasets()
        # Folder mode with no speakers held out (validation_percent and testing_percent 0,
        # no folds: the final model after cross-validation) fits on every clip.
        fit = SPLITS[:2] if self.validates else SPLITS[:1]
        needed = {"fit": fit, "validate": SPLITS[1:2], "test": SPLITS[2:]}
        for split in needed.get(stage or "", SPLITS):
            if not any(c.path is not None for c in self.datasets[split].clips):
                raise DataError(
                    f"{self.data_dir()}: no clips of the labels {self.labels} in the {split} "
                    "split (folder mode holds out speakers by the hash of their id; a folder "
                    "with few speakers may leave a split empty)"
                )

    @property
    def validates(self) -> bool:
        """Whether the data has a validation split: a folder with ``validation_percent`` 0
        has none (every speaker trains, the last epoch is the model)."""
        return not split_is_empty(self.hparams, "validation")

    @property
    def tests(self) -> bool:
        """Whether the data has a test split (not when ``testing_percent`` is 0 without
        folds)."""
        return not split_is_empty(self.hparams, "testing")

    def check_folder(self) -> FolderSurvey:
        """The folder's survey, read once: stop on labels it cannot train (one line), warn
        on what it leaves unused."""
        try:
            survey = FolderSurvey.of(self.data_dir(), self.labels)
        except FileNotFoundError as err:
            raise DataError(f"{err} (data.root)") from None
        problems = survey.problems(self.label_set)
        if problems:
            raise DataError(problems[0])
        for line in survey.warnings(self.label_set):
            rank_zero_only(log.warning)(line)
        return survey

    def _build_datasets(self) -> None:
        splits = self.build_splits()
        noise = self.noise_recordings(splits)
        self._bank = NoiseBank([torch.from_numpy(n) for n in noise], self.clip_samples)
        for split in SPLITS:
            packed = None
            if self.hparams.use_pack:
                files = [c.path for c in splits[split] if c.path is not None]
                packed = open_pack(self.pack_path(), split, files, self.clip_samples)
            if packed is not None and packed.unreadable:
                log.warning("%s: leaving out %d unreadable files", split, len(packed.unreadable))
                splits[split] = [
                    c for c in splits[split]
                    if c.path is None or str(c.path.resolve()) not in packed.unreadable
                ]  # fmt: skip
            elif packed is None:
                splits[split], errors, recordings = readable(splits[split])
                for error in errors:
                    log.warning("unreadable clip left out: %s", error)
                if errors:
                    log.warning("%s: leaving out %d unreadable files", split, len(errors))
                for line in recordings:
                    log.warning("long file left out of the clips: %s", line)
                if recordings:
                    log.warning(
                        "%s: leaving out %d files longer than %g s",
                        split, len(recordings), MAX_CLIP_S,
                    )  # fmt: skip
            clips = self.balance(splits[split], split)
            self.datasets[split] = ClipDataset(
                clips, noise, self.hparams.seed, packed, self.clip_samples
            )
        self.clip_counts = {
            split: {
                label: n
                for label, n in Counter(self.labels[c.label] for c in dataset.clips).items()
            }
            for split, dataset in self.datasets.items()
        }
        if self.trainer is None or self.trainer.is_global_zero:
            print_clip_counts(self.labels, self.clip_counts, self.speaker_counts())

    def speaker_counts(self) -> dict[str, int]:
        """Distinct speakers per split (generated silence aside)."""
        return {
            split: len({c.speaker for c in dataset.clips if c.path is not None})
            for split, dataset in self.datasets.items()
        }

    # -- loaders -----------------------------------------------------------------------
    def _loader(self, split: str, train: bool) -> ResumableLoader:
        """Loader of one split: this rank's shard, padded so all ranks run equal batches."""
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        dataset = self.datasets[split]
        sampler = ShardedSampler(
            dataset, world, rank, shuffle=train, seed=self.hparams.seed, tag_epoch=train
        )
        workers = self.hparams.num_workers
        pin = self.hparams.pin_memory
        if pin is None:  # pin for a CUDA device: the trainer's, or (no trainer) any there is
            cuda = torch.cuda.is_available()
            pin = trainer.strategy.root_device.type == "cuda" if trainer else cuda
        return ResumableLoader(
            dataset,
            sampler,
            self.train_progress if train else None,
            batch_size=self.hparams.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
        )

    def state_dict(self) -> dict:
        """Saved in every checkpoint: how far the training loader is in its epoch."""
        return {
            "train_loader": {
                "epoch": self.train_progress.epoch,
                "batches": self.train_progress.batches,
            }
        }

    def load_state_dict(self, state: dict) -> None:
        """Restored on resume: the next training pass continues the interrupted epoch."""
        if "train_loader" in state:
            loader = state["train_loader"]
            self.train_progress.resume = (loader["epoch"], loader["batches"])

    def train_dataloader(self) -> ResumableLoader:
        return self._loader("training", train=True)

    def val_dataloader(self) -> ResumableLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> ResumableLoader:
        return self._loader("testing", train=False)

    def streaming_views(self, wave: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Time shift, and the windows a stream shows beside whole words (see
        ``shift_anywhere``, ``edge_cut_prob``, ``join_prob``), and keywords heard
        mid-sentence (``context_prob``).

        Args:
            wave: (B, N) training clips on the device.
            target: (B,) their labels (-1: padding).

        Returns:
            (B, N) clips and (B,) labels, half words and joined words as ``_unknown_``.
        """
        hp = self.hparams
        if not (hp.shift_anywhere or hp.edge_cut_prob or hp.join_prob or hp.context_prob):
            return time_shift(wave, int(hp.time_shift_ms * SAMPLE_RATE / 1000)), target
        start, end = speech_bounds(wave)
        if hp.shift_anywhere:
            out = shift_keeping_speech(wave, start, end)
        else:
            out = time_shift(wave, int(hp.time_shift_ms * SAMPLE_RATE / 1000))
        keyword = torch.tensor([is_keyword(x) for x in self.labels], device=wave.device)
        words = [i for i, x in enumerate(self.labels) if x != SILENCE]
        is_word = torch.isin(target, torch.tensor(words, device=wave.device))  # not pad
        draw = torch.rand(target.shape, device=wave.device)
        cut = is_word & keyword[target.clamp(min=0)] & (draw < hp.edge_cut_prob)
        join = is_word & (draw >= hp.edge_cut_prob) & (draw < hp.edge_cut_prob + hp.join_prob)
        if hp.edge_cut_prob:
            out = torch.where(cut[:, None], cut_at_edge(wave, start, end), out)
        if hp.join_prob:
            order = torch.randperm(len(target), device=wave.device)
            out = torch.where(join[:, None], join_words(wave, start, end, order), out)
        if hp.context_prob:
            taken = hp.edge_cut_prob + hp.join_prob
            amid = is_word & keyword[target.clamp(min=0)] & (draw >= taken)
            amid &= draw < taken + hp.context_prob
            before, after = (torch.randperm(len(target), device=wave.device) for _ in "ab")
            heard = surround_word(wave, start, end, before, after)
            out = torch.where(amid[:, None], heard, out)
        unknown = self.labels.index(UNKNOWN) if UNKNOWN in self.labels else -1
        return out, torch.where(cut | join, unknown, target)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int):  # noqa: ANN201
        """Waveform augmentation on the device, for training batches only."""
        if self.trainer is None or not self.trainer.training:
            return batch
        wave, target = batch
        hp = self.hparams
        # Every training batch draws its randomness (augmentation here, SpecAugment, mixup
        # and dropout in the step) from a seed of its own, so a resumed run repeats exactly
        # what the uninterrupted run would have done.
        batches_before = self.trainer.fit_loop.epoch_loop.batch_progress.total.ready
        torch.manual_seed(step_seed(hp.seed, batches_before, self.trainer.global_rank))
        wave = speed_perturb(wave, hp.speed_low, hp.speed_high)
        wave, target = self.streaming_views(wave, target)
        if hp.noise_prob > 0 and self._bank is not None:
            self._bank = self._bank.to(wave.device)
            noise = self._bank.sample(wave.shape[0]).to(wave.dtype)
            wave = add_noise(wave, noise, hp.noise_prob, hp.snr_low, hp.snr_high)
        return wave, target
