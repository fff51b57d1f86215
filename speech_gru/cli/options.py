"""What the commands share: argument types, the detector flags, checks of files to write,
and the one-line error every command ends with.

A command turns what goes wrong into ``CliError`` (``main`` prints it as ``error: ...``
and exits with 2); an argument out of range is argparse's usage error, also exit 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from speech_gru.core.audio import AUDIO_EXTENSIONS, MAX_FILE_RATE, MIN_FILE_RATE, printable
from speech_gru.runtime.checkpoint import settings_text
from speech_gru.runtime.detector import DetectorConfig


class CliError(Exception):
    """A failure that ends the command with a one-line message and exit code 2."""


def fail(message: str) -> None:
    """Print ``error: message`` on one line, control characters from file names escaped."""
    print(f"error: {printable(message)}", file=sys.stderr)


def reason(err: OSError) -> str:
    """What went wrong, without the path (``No space left on device``)."""
    return err.strerror or type(err).__name__


def check_output(path: str, option: str, inputs: Sequence[str], create: bool = False) -> Path:
    """Check a file to be written before any work starts.

    Refused: a folder; a path under a missing folder (created later when ``create``) or
    under something that is not a folder; an input (it would be overwritten, and
    ``transcribe`` would truncate it before reading it); an audio file name inside an input
    folder (it would be read as input while it is written). A report such as
    ``clips/results.csv`` inside an input folder is fine: walking skips it.

    Raises:
        CliError: naming the option, the path and the problem.
    """
    out = Path(path)
    where = f"{option} {path}"
    try:
        if out.is_dir():
            raise CliError(f"{where}: is a folder")
        check_folder(out.parent, where, create)
        target = out.resolve()
        for name in inputs:
            source = Path(name)
            if source.is_dir():
                audio = out.suffix.lower() in AUDIO_EXTENSIONS
                if audio and target.is_relative_to(source.resolve()):
                    raise CliError(f"{where}: inside the input folder {name} (it would be read)")
            elif out.exists() and source.exists() and os.path.samefile(out, source):
                raise CliError(f"{where}: is the input {name} (it would be overwritten)")
    except OSError as err:  # e.g. a folder on the way that may not be searched
        raise CliError(f"{where}: cannot use ({reason(err)})") from None
    return out


def check_folder(folder: Path, where: str, create: bool) -> None:
    """Refuse a folder to write in that is not one, or is missing (unless ``create``).

    Raises:
        CliError: naming ``where`` (the option and its value) and the problem.
        OSError: a folder on the way cannot be searched.
    """
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    if not existing.is_dir():
        raise CliError(f"{where}: {existing} is not a folder")
    if existing != folder and not create:
        raise CliError(f"{where}: folder {folder} does not exist")


# ---------------------------------------------------------------- the model and its detector


def add_model_argument(
    p: argparse.ArgumentParser,
    exports: bool = True,
    help: str | None = None,  # noqa: A002 - argparse's name
) -> None:
    """``--checkpoint``, the model file every command that runs a model takes (the bundled
    model when none is given: ``use_bundled_model``), and with ``exports`` its
    ``--trust-torchscript`` opt-in (what ``load_model`` reads).

    Args:
        p: the command's parser.
        exports: the command also runs exported models (ONNX, trusted TorchScript); False
            for commands that need a training checkpoint, which never runs code.
        help: the ``--checkpoint`` help (default: the kinds the command takes).
    """
    from speech_gru.runtime.bundled import DEFAULT

    if help is None:
        help = (
            "model file: a training checkpoint (.ckpt) or an ONNX export (.onnx); a "
            "TorchScript export (.pt) with --trust-torchscript"
            if exports
            else "training checkpoint (.ckpt)"
        )
    p.add_argument("--checkpoint", help=f"{help} (default: the bundled model {DEFAULT})")
    if exports:
        p.add_argument(
            "--trust-torchscript",
            action="store_true",
            help="load a TorchScript model file: it runs code of its own when loaded, as "
            "torch.jit.load does, so only for files from a source you trust (checkpoints "
            "and ONNX files carry no code and need no trust)",
        )


def use_bundled_model(args: argparse.Namespace) -> None:
    """Point a command given no ``--checkpoint`` at the bundled model, and say so on
    stderr in one line (a command that takes no model, or lists devices, is left alone).

    Raises:
        CliError: no model was given and none ships with this installation.
    """
    from speech_gru.runtime.bundled import bundled_model
    from speech_gru.runtime.checkpoint import ModelLoadError

    if "checkpoint" not in vars(args) or args.checkpoint or getattr(args, "list_devices", 0):
        return
    try:
        model = bundled_model()
    except ModelLoadError as err:
        raise CliError(f"no --checkpoint given, and {err}") from None
    args.checkpoint = str(model.path)
    print(
        f"model: the bundled {model.name} ({printable(model.path)}); --checkpoint FILE "
        "uses another",
        file=sys.stderr,
    )


def load_model(args: argparse.Namespace):  # noqa: ANN201 - a Classifier
    """The model of ``--checkpoint`` (a TorchScript one only with ``--trust-torchscript``).

    Raises:
        CliError: the file cannot be loaded (``ModelLoadError``'s line).
    """
    from speech_gru.runtime.checkpoint import ModelLoadError
    from speech_gru.runtime.factory import load_model as load

    try:
        return load(args.checkpoint, getattr(args, "trust_torchscript", False))
    except ModelLoadError as err:
        raise CliError(str(err)) from None


def given_flags(args: argparse.Namespace) -> dict[str, float]:
    """The ``DetectorConfig`` settings set on the command line."""
    flags = DetectorConfig.flags()
    return {f.name: getattr(args, f.name) for f in flags if getattr(args, f.name, None) is not None}


def detector_config(
    args: argparse.Namespace,
    batch_windows: int,
    classifier=None,  # noqa: ANN001 - a Classifier
    calibrated: bool = True,
) -> DetectorConfig:
    """Detector settings: each flag the user gave, else the classifier's calibrated
    operating point (when it has one and ``calibrated``), else ``DetectorConfig``'s
    defaults (``factory.detector_config``). A given ``--threshold`` holds for every keyword
    (the point's per-keyword ones are dropped).

    Raises:
        CliError: the model cannot run at these settings, or a flag is beyond
            ``DetectorConfig``'s limits, naming the flag.
    """
    from speech_gru.runtime.detector import ConfigError
    from speech_gru.runtime.factory import SettingError
    from speech_gru.runtime.factory import detector_config as resolve

    try:
        return resolve(classifier, given_flags(args), batch_windows, calibrated)
    except (SettingError, ConfigError) as err:
        flag = next((f.metadata["flag"] for f in DetectorConfig.flags() if f.name == err.name), "")
        if not flag:  # a setting no flag sets
            raise CliError(str(err)) from None
        raise CliError(f"{flag} {err.value:g}: {getattr(err, 'problem', err)}") from None


def load_runtime(args: argparse.Namespace, batch_windows: int):  # noqa: ANN201 - a Runtime
    """The model of ``--checkpoint`` at the settings of ``detector_config``.

    Raises:
        CliError: the file cannot be loaded, or the model cannot run at these settings.
    """
    from speech_gru.runtime.factory import Runtime

    classifier = load_model(args)
    return Runtime(classifier, detector_config(args, batch_windows, classifier))


def operating_point_line(
    args: argparse.Namespace,
    config: DetectorConfig,
    classifier=None,  # noqa: ANN001
) -> str:
    """``operating point: calibrated for 1 false alarms/h (threshold 0.83, ...)``: where
    the settings of ``detector_config`` come from, for stderr."""
    point = getattr(classifier, "operating_point", None)
    if point is None:
        origin = "defaults, the model is not calibrated"
    else:
        origin = f"calibrated for {point.target_fa_per_hour:g} false alarms/h"
    set_here = given_flags(args)
    given = [
        f.metadata["flag"]
        for f in DetectorConfig.flags()
        if f.metadata["calibrated"] and f.name in set_here
    ]
    if given:
        origin += f", overridden by {' '.join(given)}"
    text = settings_text(config.threshold, config.thresholds, config.average_s, config.refractory_s)
    line = f"operating point: {origin} ({text})"
    if point is not None and not math.isclose(point.hop_s, config.hop_s):
        line += f"; calibrated at hop {point.hop_s:g} s, running at {config.hop_s:g} s"
    return line


def add_detector_arguments(
    p: argparse.ArgumentParser, names: Sequence[str] | None = None, calibrated: bool = True
) -> None:
    """Detector flags, generated from ``DetectorConfig``'s fields (its defaults are the
    only copy). ``names`` limits them to those fields; with ``calibrated`` the help says
    that a calibrated model's operating point comes before the default."""
    types = {
        "positive": positive_float,
        "non_negative": non_negative_float,
        "probability": probability,
    }
    for f in DetectorConfig.flags():
        if names is not None and f.name not in names:
            continue
        meta = f.metadata
        default = f"{f.default:g}"
        if calibrated and meta["calibrated"]:
            default = f"the model's calibrated point, else {default}"
        p.add_argument(
            meta["flag"],
            dest=f.name,
            type=types[meta["kind"]],
            default=None,
            metavar="P" if meta["kind"] == "probability" else "SECONDS",
            help=f"{meta['help']} (default: {default})",
        )


# ---------------------------------------------------------------- argument types
# A value out of range is argparse's usage error (exit 2), not a traceback (or, worse, a
# silent wrong answer: a negative batch size classified nothing).


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    if (value := _number(text, int)) < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return int(value)


def positive_float(text: str) -> float:
    if (value := _number(text, float)) <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    if (value := _number(text, float)) < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    if (value := _number(text, int)) < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return int(value)


def probability(text: str) -> float:
    if not 0 < (value := _number(text, float)) <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def sample_rate(text: str) -> int:
    if not MIN_FILE_RATE <= (value := _number(text, int)) <= MAX_FILE_RATE:
        raise argparse.ArgumentTypeError(
            f"must be from {MIN_FILE_RATE} to {MAX_FILE_RATE} Hz, got {text!r}"
        )
    return int(value)


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows every option's default (unless its text already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = "default" in text or action.default in (None, False, argparse.SUPPRESS)
        if shown or not action.option_strings:
            return action.help
        return f"{text} (default: %(default)s)"


SPLITS = ("training", "validation", "testing", "all")
"""The dataset splits ``--split`` of ``calibrate`` and ``evaluate`` chooses from."""


def check_held_out(model: str, hparams: dict | None, split: str) -> None:
    """Refuse, in one line, a ``--split`` that the model's recorded speaker split leaves
    empty (a model trained on every speaker has no test or validation speakers)."""
    from speech_gru.train.corpus import split_is_empty

    if split != "all" and split_is_empty(hparams, split):
        raise CliError(
            f"{model}: trained on every speaker of its data (no {split} speakers); "
            "--split all uses every clip (of a folder it never heard)"
        )
