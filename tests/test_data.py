"""Tests for speech_gru.train.data: speaker ids, hash splits, folder and official layouts, loaders.

Every dataset is written to tmp_path as tiny 16 kHz WAVs. Each file is a tone whose
frequency encodes its word (plus a small per-file offset, so no two files are equal), which
lets a test check that a loaded waveform really is the file its label says.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from speech_gru.core.audio import SAMPLE_RATE, load_audio, write_wav
from speech_gru.core.labels import BACKGROUND_NOISE, COMMANDS, SILENCE, UNKNOWN
from speech_gru.train.clips import PAD
from speech_gru.train.corpus import SPLITS, speaker_of, which_set
from speech_gru.train.data import DataError, SpeechCommandsDataModule
from speech_gru.train.loaders import ResumableLoader, ShardedSampler
from tests.helpers import peak_hz, tone

WORDS = ("yes", "no", "up", "cat", "dog", "bird")  # cat, dog, bird are not commands
WORD_HZ = {word: 400.0 * (i + 1) for i, word in enumerate(WORDS)}  # 400 Hz apart
NOISE_HZ = 5000.0  # the _background_noise_ recording of most folders is this tone


def word_of(wave: np.ndarray) -> str:
    """The word whose tone ``wave`` is (files add at most ~60 Hz to their word's tone)."""
    hz = peak_hz(np.asarray(wave))
    word = min(WORDS, key=lambda w: abs(WORD_HZ[w] - hz))
    assert abs(WORD_HZ[word] - hz) < 100, hz
    return word


def speaker_ids(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{int(x):08x}" for x in rng.integers(0, 2**32, n)]


def write_clip(path: Path, word: str, offset_hz: float, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, tone(WORD_HZ[word] + offset_hz, seconds=seconds, amp=0.3))


def write_noise(folder: Path, seconds: float = 3.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / "hum.wav", tone(NOISE_HZ, seconds=seconds))


def make_folder(
    root: Path,
    speakers: list[str],
    words: tuple[str, ...] = ("yes", "no", "up", "cat", "dog"),
    noise: bool = True,
    lengths: tuple[float, ...] = (1.0,),
    unknown_folder: bool = True,
) -> dict[Path, str]:
    """A dataset-layout folder; returns {file: speaker}.

    Every speaker says every word once and "yes" twice; the first ten speakers also have a
    test-archive style ``_unknown_/bird_SPEAKER_nohash_0.wav.wav`` file.
    """
    files: dict[Path, str] = {}
    for s, spk in enumerate(speakers):
        seconds = lengths[s % len(lengths)]
        for word in words:
            for rep in range(2 if word == "yes" else 1):
                path = root / word / f"{spk}_nohash_{rep}.wav"
                write_clip(path, word, 2 * s + rep, seconds)
                files[path] = spk
        if unknown_folder and s < 10:
            path = root / UNKNOWN / f"bird_{spk}_nohash_0.wav.wav"
            write_clip(path, "bird", 2 * s, seconds)
            files[path] = spk
    if noise:
        write_noise(root / BACKGROUND_NOISE)
    return files


def folder_dm(root: Path, **kwargs: object) -> SpeechCommandsDataModule:
    args: dict[str, object] = {
        "root": str(root),
        "version": "folder",
        "labels": "v2_12",
        "num_workers": 0,
        "unknown_fraction": None,
        "validation_percent": 20.0,
        "testing_percent": 20.0,
    }
    args.update(kwargs)
    dm = SpeechCommandsDataModule(**args)
    dm.setup("fit")
    return dm


def file_clips(dm: SpeechCommandsDataModule, split: str) -> list:
    return [c for c in dm.datasets[split].clips if c.path is not None]


def generated_silence(dm: SpeechCommandsDataModule, split: str) -> list[int]:
    """Indexes of the generated (file-less) silence items of a split."""
    return [i for i, c in enumerate(dm.datasets[split].clips) if c.path is None]


def keyword_count(dm: SpeechCommandsDataModule, split: str) -> int:
    return sum(dm.labels[c.label] in COMMANDS for c in dm.datasets[split].clips)


def readme_which_set(filename: str, validation_percentage: float, testing_percentage: float):
    """``which_set`` exactly as written in the Speech Commands README."""
    base_name = Path(filename).name
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = (int(hashed, 16) % (2**27)) * (100.0 / (2**27 - 1))
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < testing_percentage + validation_percentage:
        return "testing"
    return "training"


# ------------------------------------------------------------------------------ speaker_of


@pytest.mark.parametrize(
    ("name", "speaker"),
    [
        ("0a7c2a8d_nohash_0.wav", "0a7c2a8d"),
        ("yes/0a7c2a8d_nohash_12.wav", "0a7c2a8d"),
        (Path("/data/up/ffd2ba2f_nohash_3.wav"), "ffd2ba2f"),
        # the canonical test archive's _unknown_ folder: WORD_SPEAKER_nohash_N.wav.wav
        ("_unknown_/cat_0a7c2a8d_nohash_0.wav.wav", "0a7c2a8d"),
        ("backward_ffd2ba2f_nohash_1.wav.wav", "ffd2ba2f"),
        # no _nohash_: the file is its own speaker
        ("_silence_/running_tap.wav", "running_tap"),
        ("clip_0001.wav", "clip_0001"),
        ("recording.flac", "recording"),
    ],
)
def test_speaker_of(name: str | Path, speaker: str) -> None:
    assert speaker_of(name) == speaker


def test_speaker_of_groups_one_speakers_files() -> None:
    names = ["abc123_nohash_0.wav", "abc123_nohash_1.wav", "dog_abc123_nohash_0.wav.wav"]
    assert {speaker_of(n) for n in names} == {"abc123"}
    assert speaker_of("abc124_nohash_0.wav") != "abc123"


# ------------------------------------------------------------------------------ which_set


def test_which_set_with_no_salt_is_the_readme_rule() -> None:
    speakers = speaker_ids(500, seed=1)
    for val, test in [(10.0, 10.0), (5.0, 20.0)]:
        for spk in speakers:
            name = f"{spk}_nohash_0.wav"
            expected = readme_which_set(name, val, test)
            assert which_set(speaker_of(name), val, test) == expected
            assert which_set(spk, val, test, salt="") == expected
            assert which_set(spk, val, test, salt="") == expected  # deterministic


@pytest.mark.parametrize("salt", ["", "speech_gru"])
def test_which_set_proportions_follow_the_percentages(salt: str) -> None:
    counts = Counter(which_set(s, 10.0, 10.0, salt) for s in speaker_ids(2000, seed=2))
    assert set(counts) == set(SPLITS)
    assert 150 <= counts["validation"] <= 250
    assert 150 <= counts["testing"] <= 250
    assert 1500 <= counts["training"] <= 1700


def test_which_set_salt_changes_the_assignment() -> None:
    speakers = speaker_ids(2000, seed=3)
    plain = [which_set(s, 10.0, 10.0) for s in speakers]
    salted = [which_set(s, 10.0, 10.0, "speech_gru") for s in speakers]
    assert salted == [which_set(s, 10.0, 10.0, "speech_gru") for s in speakers]
    assert sum(a != b for a, b in zip(plain, salted, strict=True)) > 400
    # Speakers that the README rule puts in one bucket (a folder cut from the official test
    # split) spread over all three splits with a salt.
    test_speakers = [s for s, split in zip(speakers, plain, strict=True) if split == "testing"]
    spread = Counter(which_set(s, 10.0, 10.0, "speech_gru") for s in test_speakers)
    assert set(spread) == set(SPLITS)
    assert spread["training"] > len(test_speakers) / 2


# ------------------------------------------------------------------------------ folder mode


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, str]]:
    root = tmp_path_factory.mktemp("folder")
    return root, make_folder(root, speaker_ids(30, seed=4))


@pytest.fixture(scope="module")
def folder_module(speech_folder: tuple[Path, dict[Path, str]]) -> SpeechCommandsDataModule:
    return folder_dm(speech_folder[0])


def test_folder_no_speaker_in_two_splits(
    speech_folder: tuple[Path, dict[Path, str]], folder_module: SpeechCommandsDataModule
) -> None:
    _, files = speech_folder
    splits_of: dict[str, set[str]] = {}
    for split in SPLITS:
        clips = file_clips(folder_module, split)
        assert clips, f"{split} is empty; the fixture needs speakers in every split"
        for clip in clips:
            splits_of.setdefault(files[clip.path], set()).add(split)
            assert clip.speaker == files[clip.path]
    assert len(splits_of) == 30
    assert all(len(s) == 1 for s in splits_of.values()), splits_of
    # ... and the split is the salted README hash of the speaker.
    for spk, (split,) in splits_of.items():
        assert split == which_set(spk, 20.0, 20.0, "speech_gru")


def test_folder_every_file_in_exactly_one_split(
    speech_folder: tuple[Path, dict[Path, str]], folder_module: SpeechCommandsDataModule
) -> None:
    _, files = speech_folder
    seen = Counter(c.path for split in SPLITS for c in file_clips(folder_module, split))
    assert set(seen) == set(files)
    assert set(seen.values()) == {1}


def test_folder_labels_commands_as_themselves_and_other_words_as_unknown(
    folder_module: SpeechCommandsDataModule,
) -> None:
    labels = folder_module.labels
    assert folder_module.label_names == labels and len(labels) == 12
    counts: Counter[str] = Counter()
    for split in SPLITS:
        for clip in file_clips(folder_module, split):
            folder = clip.path.parent.name
            expected = folder if folder in COMMANDS else UNKNOWN
            assert labels[clip.label] == expected, clip.path
            counts[expected] += 1
    assert counts == {"yes": 60, "no": 30, "up": 30, UNKNOWN: 70}


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_folder_generates_silence_per_keyword_clip(
    speech_folder: tuple[Path, dict[Path, str]], fraction: float
) -> None:
    dm = folder_dm(speech_folder[0], silence_fraction=fraction)
    silence = dm.labels.index(SILENCE)
    for split in SPLITS:
        keywords = keyword_count(dm, split)
        generated = generated_silence(dm, split)
        assert all(dm.datasets[split].clips[i].label == silence for i in generated)
        assert abs(len(generated) - fraction * keywords) < 1, (split, keywords)
        assert generated, split


def test_folder_silence_folder_is_used_instead_of_generated_silence(tmp_path: Path) -> None:
    files = make_folder(tmp_path, speaker_ids(30, seed=5), words=("yes", "cat"))
    silence_files = set()
    for k in range(30):
        path = tmp_path / SILENCE / f"background_{k}.wav"
        write_clip(path, "bird", k)
        silence_files.add(path)
    dm = folder_dm(tmp_path)
    silence = dm.labels.index(SILENCE)
    used = set()
    for split in SPLITS:
        clips = dm.datasets[split].clips
        assert not generated_silence(dm, split), split
        used |= {c.path for c in clips if c.label == silence}
    assert used == silence_files
    others = {c.path for s in SPLITS for c in dm.datasets[s].clips if c.label != silence}
    assert others == set(files)


def test_folder_labels_auto_uses_folder_names(tmp_path: Path) -> None:
    files = make_folder(tmp_path, speaker_ids(20, seed=6), words=("cat", "no", "yes"))
    (tmp_path / ".cache").mkdir()
    dm = folder_dm(tmp_path, labels="auto")
    assert dm.labels == [UNKNOWN, "cat", "no", "yes"]  # sorted; no _background_noise_
    clips = [c for s in SPLITS for c in dm.datasets[s].clips]
    assert all(c.path is not None for c in clips)  # no _silence_ label, nothing generated
    assert {c.path for c in clips} == set(files) and len(clips) == len(files)
    for clip in clips:
        assert dm.labels[clip.label] == clip.path.parent.name


def test_labels_auto_needs_folder_mode(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.labels auto needs data.version folder"):
        SpeechCommandsDataModule(root=str(tmp_path), version="v0.02", labels="auto")


def test_folder_unknown_fraction_subsamples_deterministically(
    speech_folder: tuple[Path, dict[Path, str]], folder_module: SpeechCommandsDataModule
) -> None:
    root, _ = speech_folder
    unknown = folder_module.labels.index(UNKNOWN)

    def unknowns(dm: SpeechCommandsDataModule, split: str) -> list[Path]:
        return [c.path for c in dm.datasets[split].clips if c.label == unknown]

    first = folder_dm(root, unknown_fraction=0.1, seed=7)
    again = folder_dm(root, unknown_fraction=0.1, seed=7)
    other = folder_dm(root, unknown_fraction=0.1, seed=8)
    for split in SPLITS:
        everything = unknowns(folder_module, split)
        kept = unknowns(first, split)
        expected = min(len(everything), math.ceil(0.1 * keyword_count(first, split)))
        assert len(kept) == expected
        assert set(kept) <= set(everything)
        assert kept == unknowns(again, split)
        assert first.datasets[split].clips == again.datasets[split].clips
        # keywords are never subsampled
        assert keyword_count(first, split) == keyword_count(folder_module, split)
    assert len(unknowns(first, "training")) < len(unknowns(folder_module, "training"))
    assert unknowns(first, "training") != unknowns(other, "training")


# ------------------------------------------------------------------------------ silence audio


def test_eval_silence_is_deterministic_and_cut_from_the_noise(
    speech_folder: tuple[Path, dict[Path, str]], folder_module: SpeechCommandsDataModule
) -> None:
    twin = folder_dm(speech_folder[0])
    for split in ("validation", "testing"):
        dataset = folder_module.datasets[split]
        indexes = generated_silence(folder_module, split)
        assert indexes == generated_silence(twin, split)
        waves = []
        for i in indexes:
            wave, label = dataset[i]
            assert label == folder_module.labels.index(SILENCE)
            assert torch.equal(wave, dataset[i][0])  # same item twice
            assert torch.equal(wave, twin.datasets[split][i][0])  # same seed, new module
            assert wave.abs().max() > 1e-3
            assert abs(peak_hz(wave.numpy()) - NOISE_HZ) < 5  # from _background_noise_
            waves.append(wave)
        assert len(waves) >= 2 and not torch.equal(waves[0], waves[1])  # not one clip
    reseeded = folder_dm(speech_folder[0], seed=1)
    i = generated_silence(reseeded, "validation")[0]
    assert not torch.equal(reseeded.datasets["validation"][i][0], twin.datasets["validation"][i][0])


def test_training_silence_changes_every_epoch_and_repeats_within_one(
    folder_module: SpeechCommandsDataModule,
) -> None:
    """The training sampler keys items by (index, epoch): fresh silence each epoch, yet a
    resumed run draws exactly what the interrupted one would have."""
    dataset = folder_module.datasets["training"]
    i = generated_silence(folder_module, "training")[0]
    draws = [dataset[(i, epoch)][0] for epoch in range(3)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert torch.equal(dataset[(i, 1)][0], draws[1])
    assert all(abs(peak_hz(w.numpy()) - NOISE_HZ) < 5 for w in draws if w.abs().max() > 1e-3)


def test_silence_without_noise_folder_is_synthetic_noise(tmp_path: Path) -> None:
    make_folder(tmp_path, speaker_ids(20, seed=9), words=("yes", "cat"), noise=False)
    dm = folder_dm(tmp_path)
    for split in SPLITS:
        indexes = generated_silence(dm, split)
        assert indexes, split
        waves = torch.stack([dm.datasets[split][i][0] for i in indexes])
        assert waves.shape[1] == SAMPLE_RATE
        assert waves.abs().amax(dim=1).min() > 1e-4  # noise, not digital silence
        assert torch.isfinite(waves).all() and waves.abs().max() <= 1.0


def test_silence_from_short_noise_recordings_is_noise(tmp_path: Path) -> None:
    make_folder(tmp_path, speaker_ids(20, seed=14), words=("yes", "cat"), noise=False)
    (tmp_path / BACKGROUND_NOISE).mkdir()
    write_wav(tmp_path / BACKGROUND_NOISE / "short.wav", tone(NOISE_HZ, seconds=0.5))
    dm = folder_dm(tmp_path)
    i = generated_silence(dm, "validation")[0]
    assert dm.datasets["validation"][i][0].abs().max() > 1e-3


# ------------------------------------------------------------------------------ loaders


def test_loader_batches_are_fixed_length_float32_with_int64_labels(tmp_path: Path) -> None:
    files = make_folder(
        tmp_path, speaker_ids(20, seed=10), words=("yes", "no", "cat"), lengths=(0.5, 1.0, 1.5)
    )
    dm = folder_dm(tmp_path, batch_size=16)
    loaders = {
        "training": dm.train_dataloader(),
        "validation": dm.val_dataloader(),
        "testing": dm.test_dataloader(),
    }
    for split, loader in loaders.items():
        total = 0
        for wave, target in loader:
            assert wave.dtype == torch.float32 and wave.ndim == 2
            assert wave.shape == (target.shape[0], SAMPLE_RATE)
            assert target.dtype == torch.int64 and target.ndim == 1
            assert 1 <= target.shape[0] <= 16
            for w, t in zip(wave.numpy(), target.tolist(), strict=True):
                label = dm.labels[t]
                if label != SILENCE:  # the audio is the labelled file's
                    word = word_of(w[: SAMPLE_RATE // 2])
                    assert label == (word if word in COMMANDS else UNKNOWN), split
            total += target.shape[0]
        assert total == len(dm.datasets[split]), split
    # Short clips are zero-padded at the end, long ones trimmed (the start is kept).
    short = long = 0
    for split in SPLITS:
        dataset = dm.datasets[split]
        for i, clip in enumerate(dataset.clips):
            if clip.path is None:
                continue
            source = load_audio(clip.path)
            wave = dataset[i][0].numpy()
            n = min(source.size, SAMPLE_RATE)
            np.testing.assert_array_equal(wave[:n], source[:n])
            assert not wave[n:].any()
            short += source.size < SAMPLE_RATE
            long += source.size > SAMPLE_RATE
    assert short and long and short + long < len(files)


def test_loader_pins_memory_for_a_cuda_trainer_only(
    folder_module: SpeechCommandsDataModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    def trainer(device: str) -> SimpleNamespace:
        strategy = SimpleNamespace(root_device=torch.device(device))
        return SimpleNamespace(world_size=1, global_rank=0, strategy=strategy)

    monkeypatch.setattr(folder_module, "trainer", trainer("cuda"))
    assert folder_module.train_dataloader().pin_memory
    assert folder_module.val_dataloader().pin_memory
    monkeypatch.setattr(folder_module, "trainer", trainer("cpu"))
    assert not folder_module.train_dataloader().pin_memory
    monkeypatch.setitem(folder_module.hparams, "pin_memory", True)  # the user's choice wins
    assert folder_module.train_dataloader().pin_memory


def test_on_after_batch_transfer_is_identity_without_a_trainer(
    folder_module: SpeechCommandsDataModule,
) -> None:
    batch = (torch.randn(4, SAMPLE_RATE), torch.tensor([0, 1, 2, 3]))
    assert folder_module.on_after_batch_transfer(batch, 0) is batch


# ------------------------------------------------------------------------------ official layout


VAL_SPEAKERS, TEST_SPEAKERS = slice(0, 2), slice(2, 4)


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``root/v0.02`` with list files and noise, and ``root/test_v0.02`` (canonical test)."""
    root = tmp_path_factory.mktemp("official")
    data = root / "v0.02"
    speakers = speaker_ids(10, seed=11)
    files = make_folder(data, speakers, noise=False, unknown_folder=False)
    rng = np.random.default_rng(12)
    (data / BACKGROUND_NOISE).mkdir()
    write_wav(data / BACKGROUND_NOISE / "white.wav", 0.2 * rng.standard_normal(2 * SAMPLE_RATE))

    def listed(chosen: list[str]) -> set[Path]:
        return {p for p, spk in files.items() if spk in chosen}

    val, test = listed(speakers[VAL_SPEAKERS]), listed(speakers[TEST_SPEAKERS])
    for name, paths in (("validation_list.txt", val), ("testing_list.txt", test)):
        lines = sorted(p.relative_to(data).as_posix() for p in paths)
        (data / name).write_text("\n".join(lines) + "\n")

    archive = root / "test_v0.02"
    archive_files: dict[Path, str] = {}
    for s, spk in enumerate(speaker_ids(4, seed=13)):
        for word in ("yes", "no", "up"):
            path = archive / word / f"{spk}_nohash_0.wav"
            write_clip(path, word, 50 + s)
            archive_files[path] = word
        for word in ("cat", "dog"):
            path = archive / UNKNOWN / f"{word}_{spk}_nohash_{s}.wav.wav"
            write_clip(path, word, 50 + s)
            archive_files[path] = UNKNOWN
    (archive / SILENCE).mkdir()
    for k in range(2):
        path = archive / SILENCE / f"silence_{k}.wav"
        write_wav(path, 0.05 * rng.standard_normal(SAMPLE_RATE))
        archive_files[path] = SILENCE
    return {
        "root": root,
        "files": set(files),
        "val": val,
        "test": test,
        "archive": archive_files,
    }


def official_dm(root: Path, labels: str = "v2_12", **kwargs: object) -> SpeechCommandsDataModule:
    dm = SpeechCommandsDataModule(
        root=str(root),
        version="v0.02",
        labels=labels,
        download=False,
        num_workers=0,
        unknown_fraction=None,
        **kwargs,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_official_12_class_splits(official: dict[str, object]) -> None:
    dm = official_dm(official["root"])
    val = {c.path for c in file_clips(dm, "validation")}
    train = {c.path for c in file_clips(dm, "training")}
    test = {c.path for c in file_clips(dm, "testing")}
    assert val == official["val"]
    assert train == official["files"] - official["val"] - official["test"]
    assert not official["test"] & (val | train | test)  # testing_list is unused
    # The 12-class test set is the canonical test archive, as it is.
    archive = official["archive"]
    assert test == set(archive)
    assert len(dm.datasets["testing"]) == len(archive)
    assert not generated_silence(dm, "testing")
    for clip in dm.datasets["testing"].clips:
        assert dm.labels[clip.label] == archive[clip.path]
        if archive[clip.path] == UNKNOWN:  # WORD_SPEAKER_nohash_N.wav.wav
            assert clip.path.name.startswith(("cat_", "dog_"))
            assert clip.speaker == clip.path.name.split("_")[1]
    # Validation and training get generated silence, cut from _background_noise_.
    for split in ("validation", "training"):
        generated = generated_silence(dm, split)
        assert abs(len(generated) - 0.1 * keyword_count(dm, split)) < 1
        assert len(dm.datasets[split]) == len(file_clips(dm, split)) + len(generated)
    wave, label = dm.datasets["validation"][generated_silence(dm, "validation")[0]]
    assert dm.labels[label] == SILENCE and wave.abs().max() > 1e-3


def test_official_35_class_test_split_is_the_testing_list(official: dict[str, object]) -> None:
    dm = official_dm(official["root"], labels="v2_35")
    assert {c.path for c in dm.datasets["testing"].clips} == official["test"]
    assert {c.path for c in dm.datasets["validation"].clips} == official["val"]
    train = {c.path for c in dm.datasets["training"].clips}
    assert train == official["files"] - official["val"] - official["test"]
    for split in SPLITS:
        for clip in dm.datasets[split].clips:  # every word is its own label, no silence
            assert dm.labels[clip.label] == clip.path.parent.name


def test_official_missing_folder_without_download(tmp_path: Path) -> None:
    dm = SpeechCommandsDataModule(root=str(tmp_path), version="v0.02", download=False)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "v0.02"))):
        dm.prepare_data()
    # The 12-class task also needs the canonical test archive; the 35-class task does not.
    (tmp_path / "v0.02").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "test_v0.02"))):
        dm.prepare_data()
    SpeechCommandsDataModule(
        root=str(tmp_path), version="v0.02", labels="v2_35", download=False
    ).prepare_data()


def test_noise_dir_feeds_mixing_and_generated_silence(tmp_path: Path) -> None:
    """Any folder of noise recordings replaces the dataset's own background noise."""
    make_folder(tmp_path / "data", speaker_ids(20, seed=21), words=("yes", "cat"))
    (tmp_path / "noise" / "fan").mkdir(parents=True)
    write_wav(tmp_path / "noise" / "fan" / "hum.wav", tone(300.0, seconds=3.0, amp=0.3))
    dm = folder_dm(tmp_path / "data", noise_dir=str(tmp_path / "noise"))
    assert dm._bank is not None
    assert abs(peak_hz(dm._bank.sample(1)[0].numpy()) - 300.0) < 5
    i = generated_silence(dm, "validation")[0]
    assert abs(peak_hz(dm.datasets["validation"][i][0].numpy()) - 300.0) < 5

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no readable noise audio"):
        folder_dm(tmp_path / "data", noise_dir=str(empty))


# ------------------------------------------------------------------------------ sharding


class Indices(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        return key if isinstance(key, int) else key[0]


@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_cover_every_clip_exactly_once(shuffle: bool) -> None:
    dataset = Indices(11)
    shards = [list(ShardedSampler(dataset, 2, rank, shuffle=shuffle, seed=3)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 6  # equal batches on every rank
    real = [i for shard in shards for i in shard if i != PAD]
    assert sorted(real) == list(range(11))
    assert sum(i == PAD for shard in shards for i in shard) == 1


def test_shuffle_follows_seed_and_epoch() -> None:
    sampler = ShardedSampler(Indices(50), shuffle=True, seed=1)
    first = list(sampler)
    assert list(ShardedSampler(Indices(50), shuffle=True, seed=1)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == sorted(first)


def test_training_keys_carry_the_epoch() -> None:
    sampler = ShardedSampler(Indices(5), 2, 1, shuffle=True, tag_epoch=True)
    sampler.set_epoch(4)
    keys = list(sampler)
    assert all(k == (PAD, 0) or k[1] == 4 for k in keys)


def test_loader_resumes_mid_epoch_with_the_remaining_batches() -> None:
    def loader() -> ResumableLoader:
        return ResumableLoader(Indices(23), ShardedSampler(Indices(23), shuffle=True), batch_size=4)

    full = loader()
    full.sampler.set_epoch(2)
    batches = iter(full)
    seen = [next(batches).tolist() for _ in range(3)]
    state = full.state_dict()
    assert state == {"epoch": 2, "batches": 3}
    rest = [b.tolist() for b in batches]

    resumed = loader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)
    assert [b.tolist() for b in resumed] == rest
    assert resumed.state_dict() == {"epoch": 2, "batches": 3 + len(rest)}
    assert len(resumed) == len(full)  # Lightning counts the whole epoch
    resumed.sampler.set_epoch(3)  # the skip applies to the interrupted epoch only
    assert sum(len(b) for b in resumed) == 23 and seen
