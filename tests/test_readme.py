"""Every ```python block of the READMEs and the docs/ pages runs as written, so no snippet
can rot, and every link between those pages leads to a file and heading that exist.

Each block runs on its own (its own imports, a fresh namespace) in a folder that holds the
files the snippets name, by this convention:

* ``runs/mine/checkpoints/best.ckpt``: a training checkpoint (labels TINY_LABELS, always
  "yes" with probability above 0.999: ``confident_checkpoint``);
* ``kws.onnx``, ``kws.pt``: its ONNX and TorchScript exports;
* ``kws_stream.onnx``: the streaming export (``--streaming``) of a forward model's
  checkpoint (``stream.ckpt``, not named in snippets);
* ``clip.wav``: one second of a tone, mono 16 kHz; ``talk.wav``: four seconds of it;
* the microphone: ``fake_sounddevice`` replaying three seconds of the tone.

A snippet that names another file fails with a message saying to add it here.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.runtime.export import export
from tests.helpers import confident_checkpoint, fake_sounddevice, tiny_checkpoint, tone, write_tone

ROOT = Path(__file__).resolve().parents[1]
READMES = [
    ROOT / "README.md",
    ROOT / "recipes" / "speech_commands" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
FILES = [
    "runs/mine/checkpoints/best.ckpt", "kws.onnx", "kws.pt", "kws_stream.onnx", "clip.wav",
    "talk.wav",
]  # fmt: skip
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target), ![alt](target)
HEADING = re.compile(r"^#+ +(.+?) *$", re.MULTILINE)
FILE_NAME = re.compile(r"""["']([\w./-]+\.(?:ckpt|onnx|pt|wav|flac|ogg|mp3))["']""")

pytestmark = pytest.mark.usefixtures("one_thread")


def python_blocks(path: Path) -> list[tuple[str, str]]:
    """(``README.md:LINE``, code) of each ```python block; LINE is the fence's line."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    return [
        (f"{name}:{text.count(chr(10), 0, match.start()) + 1}", match.group(1))
        for match in FENCE.finditer(text)
    ]


BLOCKS = [block for path in READMES for block in python_blocks(path)]


def test_the_readme_has_python_blocks_and_the_extractor_finds_them(tmp_path: Path) -> None:
    assert any(where.startswith("README.md:") for where, _ in BLOCKS)
    doc = tmp_path / "README.md"
    doc.write_text("x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = 2\n\n```\n")
    found = [(where.split(":")[1], code) for where, code in python_blocks(doc)]
    assert found == [("2", "a = 1\n"), ("8", "b = 2\n\n")]


@pytest.fixture(scope="module")
def snippet_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding FILES."""
    root = tmp_path_factory.mktemp("readme")
    checkpoint = root / FILES[0]
    checkpoint.parent.mkdir(parents=True)
    confident_checkpoint(checkpoint, "yes")
    export(checkpoint, root / "kws.onnx", "onnx")
    export(checkpoint, root / "kws.pt", "torchscript")
    forward = tiny_checkpoint(root / "stream.ckpt", forward=True)
    export(forward, root / "kws_stream.onnx", "onnx", streaming=True)
    write_tone(root / "clip.wav", 440.0, SAMPLE_RATE, 1.0)
    write_tone(root / "talk.wav", 440.0, SAMPLE_RATE, 4.0)
    return root


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_python_block_runs(
    where: str, code: str, snippet_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = sorted(set(FILE_NAME.findall(code)) - set(FILES))
    assert not missing, f"{where} names {missing}: add them to FILES in tests/test_readme.py"
    shutil.copytree(snippet_files, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    wave = tone(440.0, SAMPLE_RATE, 3.0)
    blocks = [wave[i : i + 1600, None] for i in range(0, wave.size, 1600)]
    microphone = fake_sounddevice(blocks, rates=(SAMPLE_RATE,), max_channels=1)
    monkeypatch.setitem(sys.modules, "sounddevice", microphone)
    exec(compile(code, where, "exec"), {"__name__": "__readme__"})


def test_the_readme_onnx_loop_streams_as_the_package_does(
    snippet_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's plain onnxruntime loop over a streaming export gives, frame for frame,
    the scores the package's own stateful streaming gives the checkpoint."""
    import numpy as np

    from speech_gru.core.audio import load_audio
    from speech_gru.runtime.classifier import load_classifier

    where, code = next((w, c) for w, c in BLOCKS if "kws_stream.onnx" in c)
    shutil.copytree(snippet_files, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, where, "exec"), namespace)
    loop = np.stack(namespace["scores"])  # (frames, C)
    stepper = load_classifier(tmp_path / "stream.ckpt").stepper
    audio = load_audio(tmp_path / "talk.wav")
    package, _ = stepper(audio[None], stepper.start(1))  # (1, frames, C)
    assert loop.shape == package[0].shape == (1 + (audio.size - 640) // 320, 4)
    assert float(np.abs(loop - package[0]).max()) < 1e-4


def anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces
    to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def outside_code(text: str) -> str:
    """``text`` without its fenced code blocks, whose ``#`` lines are not headings."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", READMES, ids=[p.relative_to(ROOT).as_posix() for p in READMES])
def test_links_lead_to_files_and_headings_that_exist(page: Path) -> None:
    text = outside_code(page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif fragment and linked.suffix == ".md":
            headings = HEADING.findall(outside_code(linked.read_text(encoding="utf-8")))
            if fragment not in {anchor(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {target.partition("#")[0] for target in LINK.findall(readme)}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"README.md does not link {sorted(pages - linked)}"
