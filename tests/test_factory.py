"""The runtime factory: where a detector's settings come from, the hop a model that carries
its state may run at, and a fresh detector for every stream."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from speech_gru.runtime.checkpoint import ModelLoadError, OperatingPoint
from speech_gru.runtime.detector import DetectorConfig
from speech_gru.runtime.factory import (
    FILE_BATCH_WINDOWS,
    LIVE_BATCH_WINDOWS,
    Runtime,
    SettingError,
    check,
    detector_config,
    file_config,
    new_detector,
)
from speech_gru.runtime.stateful import StatefulScorer
from tests.helpers import TINY_LABELS

POINT = OperatingPoint(0.9, 0.8, 2.0, 0.1, thresholds={"yes": 0.6})


def stand_in(point: OperatingPoint | None = None, stepper: object = None) -> SimpleNamespace:
    """A classifier as the factory sees one: labels, operating point, stepper, scorer."""
    made = []

    def scorer(config: DetectorConfig):  # noqa: ANN202
        made.append(config)
        return lambda windows: np.full((len(windows), len(TINY_LABELS)), 0.25)

    return SimpleNamespace(
        labels=TINY_LABELS, operating_point=point, stepper=stepper, scorer=scorer, made=made
    )


def test_each_setting_is_given_else_calibrated_else_the_default() -> None:
    assert detector_config(None) == DetectorConfig(batch_windows=FILE_BATCH_WINDOWS)
    assert detector_config(stand_in(), {}, LIVE_BATCH_WINDOWS) == DetectorConfig()
    config = detector_config(stand_in(POINT), {"average_s": 0.3, "hop_s": None})
    assert (config.threshold, config.average_s, config.refractory_s) == (0.9, 0.3, 2.0)
    assert config.thresholds == {"yes": 0.6} and config.hop_s == 0.1  # None: not given
    given = detector_config(stand_in(POINT), {"threshold": 0.75})
    assert given.threshold == 0.75 and given.thresholds == {}  # one threshold for all
    both = detector_config(stand_in(POINT), {"threshold": 0.75, "thresholds": {"no": 0.5}})
    assert both.thresholds == {"no": 0.5}  # fields without a flag are set as given
    assert detector_config(stand_in(POINT), {"batch_windows": 3}, 1).batch_windows == 3
    fresh = detector_config(stand_in(POINT), {"hop_s": 0.05}, calibrated=False)
    assert fresh == DetectorConfig(hop_s=0.05, batch_windows=FILE_BATCH_WINDOWS)
    assert file_config(DetectorConfig()).batch_windows == FILE_BATCH_WINDOWS
    with pytest.raises(TypeError, match="unknown detector setting 'sample_rate'"):
        detector_config(None, {"sample_rate": 8000})
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        detector_config(None, {"threshold": 1.5})


def test_a_model_that_carries_its_state_is_refused_a_hop_that_skips_audio() -> None:
    stateful = stand_in(stepper=object())
    assert check(stateful, DetectorConfig(hop_s=1.0)).hop_s == 1.0  # the window: every sample
    with pytest.raises(SettingError) as err:
        detector_config(stateful, {"hop_s": 1.5})
    assert (err.value.name, err.value.value) == ("hop_s", 1.5)
    with pytest.raises(ValueError) as plain:
        StatefulScorer.check(DetectorConfig(hop_s=1.5))
    assert str(err.value) == str(plain.value)  # the rule's own line
    assert detector_config(stand_in(), {"hop_s": 1.5}).hop_s == 1.5  # windows: any hop


def test_every_stream_gets_a_fresh_detector_and_scorer() -> None:
    classifier = stand_in()
    runtime = Runtime(classifier, detector_config(classifier, {}, LIVE_BATCH_WINDOWS))
    first, second = runtime.detector(), runtime.detector(keep_trace=True)
    assert first is not second and first.scorer is not second.scorer
    assert classifier.made == [runtime.config, runtime.config]
    assert second.keep_trace and not first.keep_trace
    assert first.labels == TINY_LABELS and first.config == runtime.config
    own = new_detector(classifier, runtime.config, scorer=len)  # e.g. serve's batched one
    assert own.scorer is len and len(classifier.made) == 2
    second.push(np.zeros(16000, dtype=np.float32))
    assert len(second.trace) == 1  # scored with the classifier's scorer


def test_loading_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        Runtime.load(tmp_path / "missing.ckpt", {"threshold": 0.5})
    assert "missing.ckpt" in str(err.value) and "\n" not in str(err.value)
