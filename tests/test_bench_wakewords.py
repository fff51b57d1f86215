"""tools/bench_wakewords.py: wake-phrase models against pocketsphinx, as one markdown table:
the curve comparison, the table, and a run end to end on tiny synthetic folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speech_gru.core.audio import SAMPLE_RATE, write_wav
from tests.helpers import tiny_checkpoint, tone_burst
from tools.bench_wakewords import best_within, compare_curves, main, markdown, summarize


def row(threshold: float, hit_rate: float, fa_per_hour: float) -> dict:
    return {
        "threshold": threshold,
        "miss_rate": 1.0 - hit_rate,
        "hit_rate": hit_rate,
        "false_alarms_per_hour": fa_per_hour,
    }


MODEL = [row(0.99, 0.70, 0.0), row(0.9, 0.85, 2.0), row(0.7, 0.95, 8.0)]
SPHINX = [row(1e-5, 0.40, 0.0), row(1e-30, 0.60, 1.0), row(1e-50, 0.80, 4.0)]


def test_best_within_a_false_alarm_limit() -> None:
    assert best_within(MODEL, 1.0) == {
        "hit_rate": 0.7, "false_alarms_per_hour": 0.0, "threshold": 0.99
    }  # fmt: skip
    assert best_within(MODEL, 5.0)["hit_rate"] == pytest.approx(0.85)
    assert best_within([row(0.5, 0.9, 12.0)], 5.0) is None


def test_compare_curves_on_the_rates_both_reach() -> None:
    better = compare_curves(MODEL, SPHINX)
    assert better["at_least"] is True
    assert better["rates"] == 4  # 0, 1, 2 and 4 FA/h: within both curves' ranges
    # a baseline that is better at 1 FA/h
    strong = [row(1e-5, 0.40, 0.0), row(1e-30, 0.75, 1.0)]
    worse = compare_curves(MODEL, strong)
    assert worse["at_least"] is False
    assert worse["worse_at"] == {"false_alarms_per_hour": 1.0, "model": 0.7, "other": 0.75}
    # no rate in common: the model never gets under 3 FA/h, the baseline never over 1
    apart = compare_curves([row(0.5, 0.9, 3.0)], [row(1e-5, 0.4, 0.0), row(1e-9, 0.5, 1.0)])
    assert apart["at_least"] is None and apart["rates"] == 0


def stream_report(det: list[dict]) -> dict:
    return {
        "source": "somewhere: 10 keyword clips; hey_tone: 10 recordings placed 40 times",
        "duration_s": 3600.0,
        "detector": {"threshold": 0.9, "thresholds": {}},
        "metrics": {"keywords": 40, "hit_rate": 0.85, "false_alarms_per_hour": 2.0},
        "det": {"mean-then-threshold": det},
        "truths": [],
    }


def test_markdown_table() -> None:
    sphinx = {"keyphrase": "hey tone", "decode_seconds": 1.0, "keywords": 40, "rows": SPHINX}
    rows = [
        summarize("hey_tone", stream_report(MODEL), sphinx, {}),
        summarize("hey_chatterbox", stream_report(MODEL), None, {"pocketsphinx": "not here"}),
    ]
    settings = {"minutes": 60, "seed": 0, "snr": 10, "distractors": 0.6, "tolerance": 1.0}
    text = markdown(rows, settings)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| phrase"))
    assert lines[header + 1].startswith("|---|") and lines[header + 1].count("|") == 9
    first = lines[header + 2].split(" | ")
    assert first[0] == "| hey_tone" and first[1] == "40"
    assert first[2] == "85.0 % (2.0) at 0.9"  # at its calibrated point
    assert first[3:7] == ["70.0 % (0.0)", "85.0 % (2.0)", "60.0 % (1.0)", "80.0 % (4.0)"]
    assert first[7].startswith("yes")
    second = lines[header + 3].split(" | ")
    assert second[5:7] == ["-", "-"] and second[7] == "- |"
    assert "- hey_chatterbox: pocketsphinx: not here" in lines
    assert "placed 40 times" in text


def write_folders(root: Path) -> tuple[Path, Path, Path]:
    """models/yes/model.ckpt (the tiny model, keyword ``yes``), wake/ with 1.8 s
    recordings of the "phrase" yes and of another phrase, other/ with 1 s words and noise."""
    wake, other, models = root / "wake", root / "other", root / "models"
    for i in range(4):
        for folder, hz, seconds in ((wake / "yes", 700.0, 1.8), (wake / "amelia", 1500.0, 2.2)):
            folder.mkdir(parents=True, exist_ok=True)
            write_wav(folder / f"take-{i}.wav", tone_burst(seconds, 0.5, 0.8, hz, 0.3, seed=i))
    rng = np.random.default_rng(0)
    for name in ("cat", "_silence_"):
        (other / name).mkdir(parents=True)
    for i in range(4):
        write_wav(other / "cat" / f"{i:08x}_nohash_0.wav", tone_burst(1.0, 0.3, 0.3, 2000.0))
        write_wav(other / "_silence_" / f"{i}.wav", 0.05 * rng.standard_normal(SAMPLE_RATE))
    (models / "yes").mkdir(parents=True)
    tiny_checkpoint(models / "yes" / "model.ckpt")
    return models, wake, other


def test_end_to_end_on_tiny_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    models, wake, other = write_folders(tmp_path)
    out, report = tmp_path / "table.md", tmp_path / "table.json"
    argv = [
        "--models", str(models), "--data", str(wake), "--other", str(other),
        "--phrases", "yes", "--minutes", "0.5", "--out", str(out), "--json", str(report),
        "--thresholds", "1e-50", "1e-10",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    table = out.read_text()
    assert "| yes | " in table
    data = json.loads(report.read_text())
    (phrase,) = data["phrases"]
    assert phrase["phrase"] == "yes" and phrase["keywords"] > 0
    assert set(phrase["model"]["best"]) == {"1", "5"}
    runs = tmp_path / "table_runs" / "yes"
    truth = json.loads((runs / "recording.json").read_text())
    assert {k["label"] for k in truth["keywords"]} == {"yes"}
    assert {d["word"] for d in truth["distractors"]} <= {"amelia", "cat"}
    stream = json.loads((runs / "stream.json").read_text())
    assert stream["settings"]["split"] == "all" and stream["settings"]["snr"] == [10.0, 10.0]
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        assert "pip install pocketsphinx" in phrase["errors"]["pocketsphinx"]
    else:
        sphinx = json.loads((runs / "pocketsphinx.json").read_text())
        assert sphinx["keyphrase"] == "yes" and len(sphinx["rows"]) == 2
        assert sphinx["keywords"] == phrase["keywords"]  # the same recording and truth
        assert "comparison" in phrase


def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "data").mkdir()
    common = ["--models", str(tmp_path / "models"), "--data", str(tmp_path / "data")]
    out = ["--out", str(tmp_path / "t.md")]
    cases = [
        ([*common, "--other", str(tmp_path / "nowhere"), *out], "--other"),
        ([*common, "--other", str(tmp_path / "data"), *out], "no PHRASE/model.ckpt"),
        ([*common, "--other", str(tmp_path), "--phrases", "amelia", *out], "model.ckpt"),
    ]
    for argv, named in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and named in err, err
