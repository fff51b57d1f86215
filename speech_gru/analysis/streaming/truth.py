"""What was said when in a recording: the ``Truth`` of each word, and truth files.

A truth file is CSV with a header ``label,start_s,end_s`` or JSON (a list of ``{"label",
"start_s", "end_s"}`` objects, or an object whose ``keywords`` and ``distractors`` lists
hold them, as ``write_truth`` writes next to a ``--save-wav`` recording). ``read_truth``
reads and checks the user's; ``split_truth`` tells a model's keywords from other words: a
row whose label is one of the model's keywords is a keyword, ``_unknown_`` or any other
word marks another word.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.core.labels import SILENCE, UNKNOWN


@dataclass(frozen=True)
class Truth:
    """A spoken word of the recording.

    Attributes:
        label: keyword label (``_unknown_`` for another word, a distractor).
        start_s: start of the speech, in recording seconds.
        end_s: end of that speech.
        clip_start_s: where the inserted clip starts (``start_s`` for a user's truth).
        clip_end_s: where it ends (``end_s`` for a user's truth).
        source: the clip's file (or espeak voice).
        word: the word spoken.
        snr_db: the word's speech-to-background ratio as inserted (None: not known).
    """

    label: str
    start_s: float
    end_s: float
    clip_start_s: float
    clip_end_s: float
    source: str = ""
    word: str = ""
    snr_db: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class TruthError(ValueError):
    """A truth file that cannot be used; ``str()`` is one line naming the file."""


TRUTH_FIELDS = ("label", "start_s", "end_s")

# A time is a short decimal: anything longer is not a time, and converting a number of
# thousands of digits costs time (and, from a JSON integer, raises OverflowError).
_MAX_NUMBER_CHARS = 40


def _seconds(value: object) -> float:
    """A time field as a float; ValueError for anything that is not a plain number.

    Booleans are refused although Python counts them as integers: ``true`` is not a time.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("not a number")
    if isinstance(value, str) and len(value.strip()) > _MAX_NUMBER_CHARS:
        raise ValueError("too long")
    if isinstance(value, int) and abs(value) >= 10**_MAX_NUMBER_CHARS:
        raise ValueError("too large")
    return float(value)


def _json_rows(path: Path, text: str) -> list[tuple[str, object]]:
    """The rows of a JSON truth file, each with where it is; TruthError in one line."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TruthError(f"{path}: not JSON ({err.msg}, line {err.lineno})") from None
    except ValueError:
        # Python refuses integers of thousands of digits before building them.
        raise TruthError(f"{path}: not JSON (a number with too many digits)") from None
    except RecursionError:
        raise TruthError(f"{path}: not JSON (nested too deep)") from None
    if isinstance(data, dict):
        lists = []
        for key in ("keywords", "distractors"):
            value = data.get(key, [])
            if not isinstance(value, list):
                raise TruthError(f"{path}: {key} must be a list of {{label, start_s, end_s}}")
            lists.extend(value)
        data = lists
    if not isinstance(data, list):
        raise TruthError(f"{path}: expected a list of {{label, start_s, end_s}} objects")
    return [(f"item {i + 1}", row) for i, row in enumerate(data)]


def _csv_rows(path: Path, text: str) -> list[tuple[str, object]]:
    """The rows of a CSV truth file, each with where it is; TruthError in one line."""
    reader = csv.DictReader(io.StringIO(text))
    rows: list[tuple[str, object]] = []
    try:
        missing = [f for f in TRUTH_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise TruthError(
                f"{path}: the CSV header must name {','.join(TRUTH_FIELDS)} "
                f"(missing {', '.join(missing)})"
            )
        for row in reader:
            rows.append((f"line {reader.line_num}", row))
    except csv.Error as err:
        # A field over csv's limit (128 KiB) or a NUL byte: the reader's words, one line.
        line = reader.line_num or 1
        raise TruthError(f"{path}: line {line}: not CSV ({' '.join(str(err).split())})") from None
    return rows


def read_truth(path: str | Path, duration_s: float | None = None) -> list[Truth]:
    """Read the words spoken in a recording from a CSV or JSON file.

    CSV: a header naming at least ``label,start_s,end_s`` (other columns are ignored),
    then one row per word. JSON: a list of objects with those keys, or an object whose
    ``keywords`` and ``distractors`` lists hold them (the ``--save-wav`` sidecar). Times
    are seconds from the start of the recording; a word's label is kept as written (see
    ``split_truth``).

    Args:
        path: the file; ``.json`` is read as JSON, anything else as CSV.
        duration_s: the recording's length; a word ending after it is an error.

    Returns:
        The words in time order.

    Raises:
        TruthError: unreadable file, not CSV or JSON (a field over 128 KiB, JSON nested
            too deep), missing field, bad number (a boolean, or over 40 characters),
            ``start_s >= end_s``, a time outside the recording, or a ``_silence_`` row.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "not text"
        raise TruthError(f"{path}: cannot read the truth file ({reason})") from None
    rows = _json_rows(path, text) if path.suffix.lower() == ".json" else _csv_rows(path, text)
    truths = []
    for where, row in rows:
        if not isinstance(row, dict) or any(row.get(f) in (None, "") for f in TRUTH_FIELDS):
            raise TruthError(f"{path}: {where}: needs {', '.join(TRUTH_FIELDS)}")
        if isinstance(row["label"], (bool, list, dict)):
            raise TruthError(f"{path}: {where}: label must be text")
        label = str(row["label"]).strip()
        try:
            start, end = _seconds(row["start_s"]), _seconds(row["end_s"])
        except (TypeError, ValueError, OverflowError):
            raise TruthError(f"{path}: {where}: start_s and end_s must be numbers") from None
        if label == SILENCE:
            raise TruthError(f"{path}: {where}: {SILENCE} is not a word (leave silence out)")
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise TruthError(f"{path}: {where}: needs 0 <= start_s < end_s, got {start}, {end}")
        if duration_s is not None and end > duration_s + 1e-6:
            raise TruthError(
                f"{path}: {where}: ends at {end:g} s, after the recording ({duration_s:.2f} s)"
            )
        word = str(row.get("word") or label)
        truths.append(Truth(label, start, end, start, end, str(path), word))
    return sorted(truths, key=lambda t: t.start_s)


def split_truth(
    truths: Sequence[Truth], keywords: Sequence[str]
) -> tuple[list[Truth], list[Truth]]:
    """Keywords and other words of a truth list, for a model with these ``keywords``.

    Returns:
        ``(keywords, others)``: rows whose label is one of ``keywords``, and every other row
        relabelled ``_unknown_`` (its ``word`` kept).
    """
    wanted = set(keywords)
    found = [t for t in truths if t.label in wanted]
    others = [replace(t, label=UNKNOWN) for t in truths if t.label not in wanted]
    return found, others


def write_truth(
    path: str | Path,
    keywords: Sequence[Truth],
    others: Sequence[Truth],
    duration_s: float,
    source: str,
) -> None:
    """Write a built recording's truth as JSON, the form ``read_truth`` reads back.

    Args:
        path: the file (``--save-wav``'s WAV name with ``.json``).
        keywords: the keywords spoken, in time order.
        others: the other words spoken (distractors), in time order.
        duration_s: the recording's length.
        source: where the recording comes from, in words.

    Raises:
        OSError: the file cannot be written.
    """
    document = {
        "sample_rate": SAMPLE_RATE,
        "duration_s": duration_s,
        "source": source,
        "keywords": [t.to_dict() for t in keywords],
        "distractors": [t.to_dict() for t in others],
    }
    Path(path).write_text(json.dumps(document, indent=1) + "\n")
