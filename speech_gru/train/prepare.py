"""The recipe's data preparation command (``recipes/speech_commands/prepare.py``).

Stages, each skipped when already done: ``download`` (official archives: fetch, verify
SHA-256, extract) and ``pack`` (decode every split into one int16 array). ``--archive
NAME`` instead fetches one official archive alone into ``--data.root``, e.g. the v0.02
test archive (``test_v0.02``) to score a model on, or to train ``folder.yaml`` on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser

from speech_gru.train import download
from speech_gru.train.data import DataError, SpeechCommandsDataModule
from speech_gru.train.download import ARCHIVES, DownloadError

STAGES = ("download", "pack")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Download, verify and pack a recipe's data.")
    parser.add_argument("--config", type=str, help="a recipe config (its data section)")
    parser.add_argument(
        "--stage", choices=(*STAGES, "all"), default="all", help="what to do (default: all)"
    )
    parser.add_argument(
        "--archive",
        choices=sorted(ARCHIVES),
        help="only download, verify and extract this official archive into "
        "DATA.ROOT/NAME (test_v0.02: the canonical v0.02 test set, a folder in the dataset "
        "layout); --stage is not used",
    )
    parser.add_class_arguments(SpeechCommandsDataModule, "data")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:  # the config's data section, then the command line again on top
        section = yaml.safe_load(Path(args.config).read_text()).get("data") or {}
        parser.set_defaults({f"data.{key}": value for key, value in section.items()})
        args = parser.parse_args(argv)
    if args.archive:
        return fetch_archive(args.archive, Path(args.data.root))
    datamodule = SpeechCommandsDataModule(**vars(args.data))
    stages = STAGES if args.stage == "all" else (args.stage,)
    try:
        if "download" in stages:
            datamodule.prepare_data()
            print(f"data ready in {datamodule.data_dir()}")
        if "pack" in stages:
            written = datamodule.pack(progress=True)
            done = ", ".join(f"{split} {n}" for split, n in written.items())
            print(f"packed clips ({done}; 0 = already up to date) in {datamodule.pack_path()}")
    except (DataError, DownloadError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def fetch_archive(name: str, root: Path) -> int:
    """Fetch one official archive into ``root/name``; 0 when done, 2 on failure."""
    try:
        folder = download.fetch(name, root)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{name} ready in {folder} ({ARCHIVES[name].url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
