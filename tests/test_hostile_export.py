"""Keeps every hostile-input case of export and model loading so none comes back.

What users rely on: a refusal or failure ends with exit code 2 and one line
``error: FILE: problem`` (no traceback), and their files (the checkpoint, an earlier
export, anything sharing a name with a scratch file) are left byte for byte as they were.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from speech_gru.cli.main import main
from speech_gru.runtime.checkpoint import ModelLoadError
from speech_gru.runtime.classifier import load_classifier
from tests.helpers import LABELS, TINY_LABELS, tiny_checkpoint, write_tone

pytestmark = pytest.mark.slow  # every test here uses the session's trained model

SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
TRUST = ["--trust-torchscript"]
"""The opt-in to TorchScript files (harmless for the others): these tests load exports
they wrote themselves."""


def export_args(checkpoint: Path, out: Path, fmt: str = "torchscript", *extra: str) -> list[str]:
    return ["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out), *extra]


def one_error_line(capsys: pytest.CaptureFixture, path: Path | str) -> str:
    """The single stderr line of a failed command, which must name ``path``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden and temporary ones included) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def own_checkpoint(checkpoint: Path, tmp_path: Path) -> Path:
    """A copy of the session checkpoint that a test may (wrongly) overwrite."""
    path = tmp_path / "run" / "best.ckpt"
    path.parent.mkdir()
    shutil.copyfile(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def exports(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("good-exports")
    paths = {}
    for fmt, suffix in SUFFIX.items():
        paths[fmt] = out / f"kws{suffix}"
        assert main(export_args(checkpoint, paths[fmt], fmt)) == 0
    return paths


# --- export: scratch files, refusals, atomic writes -------------------------------------


def test_int8_onnx_export_keeps_a_user_file_with_its_scratch_name(
    checkpoint: Path, tmp_path: Path
) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    mine = exp / "kws.fp32.onnx"  # the scratch name export once used, then deleted
    mine.write_bytes(b"the user's float model")
    assert main(export_args(checkpoint, exp / "kws.onnx", "onnx", "--quantize", "int8")) == 0
    assert mine.read_bytes() == b"the user's float model"
    assert sorted(p.name for p in exp.iterdir()) == ["kws.fp32.onnx", "kws.onnx"]
    assert load_classifier(exp / "kws.onnx").labels == LABELS


def checkpoint_aliases(ckpt: Path) -> dict[str, Path]:
    """Other names of the same file: a spelling with ``..``, a symbolic and a hard link."""
    (ckpt.parent / "sub").mkdir()
    (ckpt.parent / "link.ckpt").symlink_to(ckpt)
    os.link(ckpt, ckpt.parent / "hard.ckpt")
    return {
        "same": ckpt,
        "dotdot": ckpt.parent / "sub" / ".." / ckpt.name,
        "symlink": ckpt.parent / "link.ckpt",
        "hardlink": ckpt.parent / "hard.ckpt",
    }


@pytest.mark.parametrize("alias", ["same", "dotdot", "symlink", "hardlink"])
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_refuses_to_replace_its_checkpoint(
    own_checkpoint: Path, capsys: pytest.CaptureFixture, alias: str, fmt: str
) -> None:
    before = own_checkpoint.read_bytes()
    out = checkpoint_aliases(own_checkpoint)[alias]
    assert main(export_args(own_checkpoint, out, fmt)) == 2
    assert "checkpoint" in one_error_line(capsys, out)
    assert own_checkpoint.read_bytes() == before
    assert not [p for p in own_checkpoint.parent.iterdir() if p.name.startswith(".")]


def test_export_refuses_to_replace_another_training_checkpoint(
    own_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    other = tmp_path / "model.pt"  # a checkpoint under the name an export would get
    shutil.copyfile(own_checkpoint, other)
    assert main(export_args(own_checkpoint, other)) == 2
    assert "training checkpoint" in one_error_line(capsys, other)
    assert other.read_bytes() == own_checkpoint.read_bytes()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_re_export_replaces_an_earlier_export(checkpoint: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "new" / "folders" / f"kws{SUFFIX[fmt]}"  # missing folders are created
    assert main(export_args(checkpoint, out, fmt, "--quantize", "int8")) == 0
    int8 = out.read_bytes()
    assert main(export_args(checkpoint, out, fmt)) == 0
    assert out.read_bytes() != int8
    assert load_classifier(out, trust_torchscript=True).labels == LABELS
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # as open() would create it


def full_disk(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
    """Make ``module.name(obj, f, ...)`` write a few bytes to ``f`` (a path or a file),
    then fail as a full disk does."""

    def save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        opened = open(f, "wb") if isinstance(f, (str, os.PathLike)) else None  # noqa: SIM115
        with opened or contextlib.nullcontext(f) as target:
            target.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module, name, save)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_full_disk_keeps_the_previous_export(
    exports: dict[str, Path],
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    out = tmp_path / f"kws{SUFFIX[fmt]}"
    shutil.copyfile(exports[fmt], out)
    full_disk(monkeypatch, *((torch.jit, "save") if fmt == "torchscript" else (onnx, "save")))
    assert main(export_args(checkpoint, out, fmt)) == 2
    line = one_error_line(capsys, out)
    assert "cannot write" in line and "No space left on device" in line
    assert snapshot(tmp_path) == {out.name: exports[fmt].read_bytes()}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_write_failure_from_the_kernel_keeps_the_previous_export(
    exports: dict[str, Path], checkpoint: Path, tmp_path: Path, fmt: str
) -> None:
    """A file-size limit makes the kernel refuse the write as a full disk would (EFBIG
    instead of ENOSPC): the process must not abort and must leave no partial file."""
    import resource
    import signal

    limit = 64 * 1024
    assert exports[fmt].stat().st_size > limit  # so that writing the export must fail

    def limit_file_size() -> None:  # in the child, before it runs Python
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, don't kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / f"kws{SUFFIX[fmt]}"
    out.write_bytes(b"an earlier export")
    code = "import sys; from speech_gru.cli.main import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *export_args(checkpoint, out, fmt)],
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: {out}: cannot write (File too large)"], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert snapshot(tmp_path) == {out.name: b"an earlier export"}


@pytest.mark.parametrize("target", ["folder", "dev-full", "under-a-file"])
def test_out_that_cannot_be_written_is_a_one_line_error(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, target: str
) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "keep.txt").write_text("mine")
    (tmp_path / "notes.txt").write_text("mine")
    if target == "dev-full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    out = {
        "folder": tmp_path / "exp",
        "dev-full": Path("/dev/full"),
        "under-a-file": tmp_path / "notes.txt" / "kws.pt",
    }[target]
    before = snapshot(tmp_path)
    assert main(export_args(checkpoint, out)) == 2
    one_error_line(capsys, out)
    assert snapshot(tmp_path) == before
    if target == "dev-full":
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # still the device


# --- loading: malformed labels and metadata in an export --------------------------------


def rewrite_onnx(src: Path, dst: Path, **entries: str) -> Path:
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key in entries:
            prop.value = entries[prop.key]
    onnx.save(model, str(dst))
    return dst


def rewrite_torchscript(src: Path, dst: Path, files: dict[str, str]) -> Path:
    extra = {"labels.json": "", "metadata.json": ""}
    with warnings.catch_warnings():  # TorchScript announces its own deprecation
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(src), _extra_files=extra)
        torch.jit.save(module, str(dst), _extra_files={**extra, **files})
    return dst


BAD_LABELS = {
    "not-json": ("yes,no,up", "not a JSON list of strings"),
    "not-a-list": ('{"0": "yes"}', "not a JSON list of strings"),
    "non-strings": ('["_silence_", "_unknown_", 1, null, ["up"], "down"]', "list of strings"),
    "too-few": ('["yes", "no", "up"]', "3 entries"),
    "too-many": (json.dumps([*LABELS, "extra"]), "7 entries"),
    "empty": ("[]", "0 entries"),
    "deeply-nested": ("[" * 100_000, "not a JSON list of strings"),
}


@pytest.mark.parametrize("case", list(BAD_LABELS))
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_malformed_labels_are_one_line_errors(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, case: str, fmt: str
) -> None:
    text, problem = BAD_LABELS[case]
    path = tmp_path / f"kws{SUFFIX[fmt]}"
    if fmt == "onnx":
        rewrite_onnx(exports[fmt], path, labels=text)
    else:
        rewrite_torchscript(exports[fmt], path, {"labels.json": text})
    with pytest.raises(ModelLoadError) as caught:
        load_classifier(path, trust_torchscript=True)
    message = str(caught.value)
    assert message.startswith(f"{path}: labels metadata ") and problem in message
    assert "\n" not in message
    capsys.readouterr()
    for command in (["transcribe", "--checkpoint", str(path), *TRUST, str(path)],
                    ["info", "--checkpoint", str(path), *TRUST]):  # fmt: skip
        assert main(command) == 2
        assert one_error_line(capsys, path) == f"error: {message}"


@pytest.mark.parametrize(
    ("fmt", "where"),
    [("torchscript", "metadata.json"), ("torchscript", "hyper_parameters"),
     ("onnx", "hyper_parameters")],
)  # fmt: skip
def test_malformed_metadata_is_a_one_line_error(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str, where: str
) -> None:
    path = tmp_path / f"kws{SUFFIX[fmt]}"
    if fmt == "onnx":
        rewrite_onnx(exports[fmt], path, hyper_parameters="{not json")
    elif where == "metadata.json":
        rewrite_torchscript(exports[fmt], path, {"metadata.json": "[1, 2"})
    else:
        rewrite_torchscript(exports[fmt], path, {"metadata.json": '{"hyper_parameters": "[]"}'})
    with pytest.raises(ModelLoadError, match=f"{where} .*is not a JSON object"):
        load_classifier(path, trust_torchscript=True)
    capsys.readouterr()
    assert main(["info", "--checkpoint", str(path), *TRUST]) == 2
    assert where in one_error_line(capsys, path)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_labels_with_control_characters_still_load(
    exports: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    """Model-provided text, kept as it is (the command line escapes it when printing)."""
    labels = ["\x1b[31mred\x1b[0m", "two\nlines", "tab\there", "bell\a", "\r", "ok"]
    text = json.dumps(labels)
    path = tmp_path / f"kws{SUFFIX[fmt]}"
    if fmt == "onnx":
        rewrite_onnx(exports[fmt], path, labels=text)
    else:
        rewrite_torchscript(exports[fmt], path, {"labels.json": text})
    assert load_classifier(path, trust_torchscript=True).labels == labels


# --- loading: a model file that runs code ----------------------------------------------


class WritesTarget(torch.nn.Module):
    """What an attacker ships as a model: its forward overwrites the first bytes of a file
    of the victim's (``torch.from_file(..., shared=True)`` maps it writable)."""

    def __init__(self, target: str, size: int) -> None:
        super().__init__()
        self.target = target
        self.size = size

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mapped = torch.from_file(self.target, shared=True, size=self.size, dtype=torch.uint8)
        mapped.fill_(88)  # used below, so that TorchScript does not drop it as dead code
        return torch.full((wave.shape[0], 4), 0.25) + 0 * mapped[0].float()


ORIGINAL = b"the user's data"


@pytest.fixture
def attack(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A victim's file and a TorchScript module that overwrites it when run, dressed as an
    export (labels and metadata; any number of outputs it likes), saved as ``evil.pt`` and
    copied as ``evil.ckpt`` and as an extension-less ``evil``."""
    target = tmp_path / "victim.txt"
    target.write_bytes(ORIGINAL)
    module = torch.jit.script(WritesTarget(str(target), len(ORIGINAL)))
    extra = {"labels.json": json.dumps(TINY_LABELS),
             "metadata.json": json.dumps({"hyper_parameters": "{}"})}  # fmt: skip
    evil = tmp_path / "evil.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        torch.jit.save(module, str(evil), _extra_files=extra)
    files = {"pt": evil, "ckpt": tmp_path / "evil.ckpt", "none": tmp_path / "evil"}
    for name in ("ckpt", "none"):
        shutil.copyfile(evil, files[name])
    return target, files


@pytest.mark.parametrize("name", ["pt", "ckpt", "none"])
def test_a_torchscript_file_is_not_run_without_the_opt_in(
    attack: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture, name: str
) -> None:
    from speech_gru import Spotter

    target, files = attack
    path = files[name]
    clip = write_tone(tmp_path / "clip.wav")
    for command in (["info", "--checkpoint", str(path)],
                    ["transcribe", "--checkpoint", str(path), str(clip)],
                    ["stream", "--checkpoint", str(path), "--input", str(clip)]):  # fmt: skip
        assert main(command) == 2
        line = one_error_line(capsys, path)
        assert "TorchScript" in line and "runs code" in line, line
        assert target.read_bytes() == ORIGINAL, command
    with pytest.raises(ModelLoadError, match="TorchScript") as caught:
        Spotter.load(path)
    assert "\n" not in str(caught.value)
    assert target.read_bytes() == ORIGINAL


def test_a_torchscript_file_named_ckpt_is_refused_even_with_the_opt_in(
    attack: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture
) -> None:
    from speech_gru import Spotter

    target, files = attack
    path = files["ckpt"]
    assert main(["info", "--checkpoint", str(path), *TRUST]) == 2
    line = one_error_line(capsys, path)
    assert "named .ckpt, so a weights-only training checkpoint" in line
    assert "is a TorchScript model" in line
    with pytest.raises(ModelLoadError, match="named .ckpt"):
        Spotter.load(path, trust_torchscript=True)
    onnx_named = path.with_suffix(".onnx")  # nor as an ONNX file
    shutil.copyfile(path, onnx_named)
    assert main(["transcribe", "--checkpoint", str(onnx_named), *TRUST, str(path)]) == 2
    assert "named .onnx, so an ONNX model" in one_error_line(capsys, onnx_named)
    assert target.read_bytes() == ORIGINAL


@pytest.mark.parametrize("name", ["pt", "none"])
def test_trusted_torchscript_loads_without_being_run(
    attack: tuple[Path, dict[str, Path]], name: str
) -> None:
    """The opt-in loads the file (its code would run on use, as the flag's help says), but
    loading never runs the model: its shape comes from the metadata, and this file has no
    'classes' entry, so it is refused before anything runs."""
    from speech_gru import Spotter

    target, files = attack
    with pytest.raises(ModelLoadError, match="no 'classes' metadata"):
        Spotter.load(files[name], trust_torchscript=True)
    assert target.read_bytes() == ORIGINAL
    path = rewrite_torchscript(
        files["pt"],
        files["pt"].with_name("evil_counted.pt"),
        {"metadata.json": json.dumps({"hyper_parameters": "{}", "classes": "4"})},  # fmt: skip
    )
    spotter = Spotter.load(path, trust_torchscript=True)
    assert spotter.kind == "torchscript" and spotter.labels == [
        "_silence_",
        "_unknown_",
        "yes",
        "no",
    ]
    assert target.read_bytes() == ORIGINAL  # loaded, not run
    spotter.classify(np.zeros(16000, np.float32))  # trusted: running it runs its code
    assert target.read_bytes() == b"X" * len(ORIGINAL)


def test_a_genuine_torchscript_export_works_with_the_opt_in(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from speech_gru import Spotter

    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt")
    clip = write_tone(tmp_path / "clip.wav")
    for out in (tmp_path / "kws.pt", tmp_path / "kws"):
        assert main(export_args(checkpoint, out)) == 0
        assert main(["transcribe", "--checkpoint", str(out), *TRUST, str(clip)]) == 0
        assert main(["info", "--checkpoint", str(out), *TRUST]) == 0
        assert "runs code:" in capsys.readouterr().out
        assert Spotter.load(out, trust_torchscript=True).labels == TINY_LABELS
    assert main(["info", "--checkpoint", str(checkpoint)]) == 0
    assert "runs code:       no" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_export_without_its_number_of_outputs_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str
) -> None:
    """As exports were written before 'classes': the loader would have to run the model to
    learn its shape, which it never does."""
    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt")
    good = tmp_path / f"good{SUFFIX[fmt]}"
    assert main(export_args(checkpoint, good, fmt)) == 0
    old = tmp_path / f"old{SUFFIX[fmt]}"
    if fmt == "onnx":
        model = onnx.load(str(good))
        kept = [p for p in model.metadata_props if p.key != "classes"]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        onnx.save(model, str(old))
    else:
        extra = {"labels.json": "", "metadata.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(good), _extra_files=extra)
            meta = json.loads(extra["metadata.json"])
            del meta["classes"]
            torch.jit.save(
                module, str(old), _extra_files={**extra, "metadata.json": json.dumps(meta)}
            )
    capsys.readouterr()
    assert main(["info", "--checkpoint", str(old), *TRUST]) == 2
    assert "no 'classes' metadata" in one_error_line(capsys, old)


def test_load_never_runs_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither export kind is run while loading (no forward pass to count outputs)."""
    from speech_gru.runtime import classifier

    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt")
    runs = []
    for fmt in ("torchscript", "onnx"):
        out = tmp_path / f"kws{SUFFIX[fmt]}"
        assert main(export_args(checkpoint, out, fmt)) == 0
        backends = (classifier.torchscript_backend, classifier.onnx_backend)
        for make in backends:

            def counting(model, make=make, fmt=fmt):  # noqa: ANN001, ANN202
                run = make(model)
                return lambda *a: runs.append(fmt) or run(*a)

            monkeypatch.setattr(classifier, make.__name__, counting)
        loaded = load_classifier(out, trust_torchscript=True)
        assert runs == [] and loaded.labels == TINY_LABELS
        loaded.predict(np.zeros((1, 16000), np.float32))
        assert runs == [fmt]
        runs.clear()
        monkeypatch.undo()


@pytest.mark.parametrize("name", ["pt", "ckpt", "none"])
def test_commands_that_read_training_checkpoints_refuse_torchscript_in_one_line(
    attack: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture, name: str
) -> None:
    target, files = attack
    path = files[name]
    clip = write_tone(tmp_path / "clip.wav")
    for command in (export_args(path, tmp_path / "out.onnx", "onnx"),
                    ["explain", "--checkpoint", str(path), str(clip)],
                    ["calibrate", "--checkpoint", str(path), "--negatives", str(clip),
                     "--target-fa", "1"]):  # fmt: skip
        with warnings.catch_warnings(record=True) as seen:  # a warning is more lines
            warnings.simplefilter("always")
            assert main(command) == 2, command
        assert not seen, [str(w.message) for w in seen]
        line = one_error_line(capsys, path)
        assert "TorchScript" in line or "an exported" in line, line
    assert target.read_bytes() == ORIGINAL
    assert not (tmp_path / "out.onnx").exists()
