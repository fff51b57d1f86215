"""Packed int16 caches: same samples and labels as the files, invalidated when they change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from speech_gru.core.audio import write_wav
from speech_gru.train.data import SpeechCommandsDataModule
from speech_gru.train.prepare import main as prepare
from tests.helpers import tone_folder

TONES = {"yes": 300.0, "no": 500.0, "cat": 700.0}


def datamodule(root: Path, pack_dir: Path, use_pack: bool = True) -> SpeechCommandsDataModule:
    dm = SpeechCommandsDataModule(
        root=str(root), version="folder", labels="v2_12", num_workers=0,
        unknown_fraction=None, validation_percent=20, testing_percent=20,
        pack_dir=str(pack_dir), use_pack=use_pack,
    )  # fmt: skip
    return dm


def items(dm: SpeechCommandsDataModule, split: str) -> tuple[torch.Tensor, list[int]]:
    dataset = dm.datasets[split]
    waves, labels = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(waves), list(labels)


def test_packed_and_unpacked_give_the_same_samples_and_labels(tmp_path: Path) -> None:
    root = tone_folder(tmp_path / "data", TONES, speakers=12, short_clips=True)
    packer = datamodule(root, tmp_path / "pack")
    written = packer.pack(progress=False)
    assert sum(written.values()) == 36
    packed, files = datamodule(root, tmp_path / "pack"), datamodule(root, tmp_path / "pack", False)
    packed.setup()
    files.setup()
    for split in ("training", "validation", "testing"):
        assert packed.datasets[split].packed is not None
        assert files.datasets[split].packed is None
        waves_p, labels_p = items(packed, split)
        waves_f, labels_f = items(files, split)
        assert labels_p == labels_f
        # int16 storage: within one quantisation step of the float samples
        torch.testing.assert_close(waves_p, waves_f, atol=1 / 32768, rtol=0)
    assert packer.pack(progress=False) == {"training": 0, "validation": 0, "testing": 0}


def test_a_changed_folder_invalidates_the_pack(tmp_path: Path) -> None:
    root = tone_folder(tmp_path / "data", TONES, speakers=12, short_clips=True)
    datamodule(root, tmp_path / "pack").pack(progress=False)
    changed = next(iter(sorted((root / "yes").glob("*.wav"))))
    write_wav(changed, np.zeros(16000))  # new content (and size/mtime)
    os.utime(changed, ns=(0, 123456789))
    (root / "no" / "deadbeef_nohash_0.wav").write_bytes(changed.read_bytes())  # a new file
    dm = datamodule(root, tmp_path / "pack")
    dm.setup()
    stale = [s for s, ds in dm.datasets.items() if ds.packed is None]
    assert stale, "splits whose files changed must fall back to the files"
    for split in stale:  # and they read the new content
        dataset = dm.datasets[split]
        for i, clip in enumerate(dataset.clips):
            if clip.path == changed:
                assert float(dataset[i][0].abs().max()) == 0.0
    assert datamodule(root, tmp_path / "pack").pack(progress=False)[stale[0]] > 0


def test_unreadable_files_are_left_out_of_the_pack(tmp_path: Path) -> None:
    root = tone_folder(tmp_path / "data", TONES, speakers=20, short_clips=True)
    broken = root / "yes" / "0badf00d_nohash_0.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    dm = datamodule(root, tmp_path / "pack")
    dm.pack(progress=False)
    dm.setup()
    paths = [c.path for ds in dm.datasets.values() for c in ds.clips]
    assert broken not in paths and len([p for p in paths if p is not None]) == 60


def test_prepare_is_safe_to_rerun(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tone_folder(tmp_path / "data", TONES, speakers=12, short_clips=True)
    args = [
        "--data.root", str(root), "--data.version", "folder", "--data.labels", "v2_12",
        "--data.pack_dir", str(tmp_path / "pack"), "--data.unknown_fraction", "null",
    ]  # fmt: skip
    assert prepare(args) == 0
    first = capsys.readouterr().out
    assert prepare(args) == 0
    second = capsys.readouterr().out
    assert "training 0, validation 0, testing 0" in second and first != second
    assert prepare(["--data.root", str(tmp_path / "missing"), "--data.version", "folder"]) == 2


def test_a_pack_written_before_the_length_was_recorded_is_of_one_second_clips(
    tmp_path: Path,
) -> None:
    import json

    from speech_gru.train.pack import open_pack, read_index, write_pack

    root = tone_folder(tmp_path / "data", TONES, speakers=2)
    files = sorted(root.glob("*/*.wav"))
    write_pack(tmp_path / "pack", "training", files)
    index_path = tmp_path / "pack" / "training.json"
    index = json.loads(index_path.read_text())
    assert index["samples"] == 16000
    del index["samples"]  # as packs were written before
    index_path.write_text(json.dumps(index))
    assert open_pack(tmp_path / "pack", "training", files).samples == 16000
    assert read_index(tmp_path / "pack", "training", 24000) is None  # not for a 1.5 s model
    assert open_pack(tmp_path / "pack", "training", files, 24000) is None


def test_prepare_packs_the_clip_length_it_is_given(tmp_path: Path) -> None:
    root = tone_folder(tmp_path / "data", TONES, speakers=12)
    args = [
        "--data.root", str(root), "--data.version", "folder", "--data.labels", "v2_12",
        "--data.pack_dir", str(tmp_path / "pack"), "--data.window_s", "2",
    ]  # fmt: skip
    assert prepare(args) == 0
    assert np.load(tmp_path / "pack" / "training.32000.npy").shape[1] == 32000
    assert not (tmp_path / "pack" / "training.npy").exists()
