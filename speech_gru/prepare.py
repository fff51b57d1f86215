"""The recipe's data preparation command (``recipes/speech_commands/prepare.py``).

Stages, each skipped when already done: ``download`` (official archives: fetch, verify
SHA-256, extract) and ``pack`` (decode every split into one int16 array).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser

from speech_gru.data import SpeechCommandsDataModule
from speech_gru.download import DownloadError

STAGES = ("download", "pack")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Download, verify and pack a recipe's data.")
    parser.add_argument("--config", type=str, help="a recipe config (its data section)")
    parser.add_argument(
        "--stage", choices=(*STAGES, "all"), default="all", help="what to do (default: all)"
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
    except (DownloadError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
