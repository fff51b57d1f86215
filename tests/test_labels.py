"""Tests for speech_gru.core.labels: the label sets, resolve_labels and map_word."""

from __future__ import annotations

import pytest

from speech_gru.core.labels import (
    BACKGROUND_NOISE,
    COMMANDS,
    LABEL_SETS,
    SILENCE,
    UNKNOWN,
    is_keyword,
    map_word,
    resolve_labels,
)

TEN_COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
V2_ONLY = {"backward", "follow", "forward", "learn", "visual"}


# ------------------------------------------------------------------------------ label sets


@pytest.mark.parametrize("name", ["v2_12", "v1_12"])
def test_12_class_sets_are_silence_unknown_and_the_ten_commands(name: str) -> None:
    labels = resolve_labels(name)
    assert labels == [SILENCE, UNKNOWN, *TEN_COMMANDS]
    assert SILENCE == "_silence_" and UNKNOWN == "_unknown_"  # the dataset's folder names
    assert list(COMMANDS) == TEN_COMMANDS


def test_v2_35_has_35_unique_words_including_the_v2_additions() -> None:
    labels = resolve_labels("v2_35")
    assert len(labels) == 35 and len(set(labels)) == 35
    assert set(labels) >= V2_ONLY
    assert set(TEN_COMMANDS) <= set(labels)
    assert not any(label.startswith("_") for label in labels)  # no _silence_ / _unknown_


def test_v1_30_has_30_unique_words_without_the_v2_additions() -> None:
    labels = resolve_labels("v1_30")
    assert len(labels) == 30 and len(set(labels)) == 30
    assert not V2_ONLY & set(labels)
    assert set(labels) | V2_ONLY == set(resolve_labels("v2_35"))


def test_resolve_returns_a_fresh_list_each_call() -> None:
    labels = resolve_labels("v2_12")
    labels.append("extra")
    labels[0] = "changed"
    assert resolve_labels("v2_12") == [SILENCE, UNKNOWN, *TEN_COMMANDS]


def test_resolve_accepts_an_explicit_sequence_in_order() -> None:
    assert resolve_labels(("dog", "cat", UNKNOWN)) == ["dog", "cat", UNKNOWN]
    assert resolve_labels(["yes"]) == ["yes"]


# ------------------------------------------------------------------------------ resolve errors


def test_resolve_unknown_set_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="v2_13") as err:
        resolve_labels("v2_13")
    for name in LABEL_SETS:
        assert name in str(err.value)


@pytest.mark.parametrize("spec", [[], ()])
def test_resolve_empty_list_is_an_error(spec: list[str]) -> None:
    with pytest.raises(ValueError, match="empty"):
        resolve_labels(spec)


def test_resolve_duplicated_labels_is_an_error() -> None:
    with pytest.raises(ValueError, match="duplicated"):
        resolve_labels(["yes", "no", "yes"])


# ------------------------------------------------------------------------------ map_word


@pytest.mark.parametrize("name", ["v2_12", "v2_35", "v1_30"])
def test_a_label_maps_to_itself(name: str) -> None:
    labels = resolve_labels(name)
    for word in labels:
        assert map_word(word, labels) == word


@pytest.mark.parametrize("word", ["cat", "marvin", "backward", "zero", "hello"])
def test_other_words_fold_into_unknown_in_the_12_class_task(word: str) -> None:
    assert map_word(word, resolve_labels("v2_12")) == UNKNOWN


def test_other_words_are_unused_without_an_unknown_label() -> None:
    assert map_word("hello", resolve_labels("v2_35")) is None
    assert map_word("backward", resolve_labels("v1_30")) is None
    assert map_word("cat", ["yes", "no"]) is None
    assert map_word("cat", ["yes", "no", UNKNOWN]) == UNKNOWN


@pytest.mark.parametrize(
    "labels",
    [
        resolve_labels("v2_12"),
        resolve_labels("v2_35"),
        resolve_labels("v1_30"),
        ["yes", "no", UNKNOWN],
        ["yes", SILENCE],
    ],
)
def test_background_noise_folder_is_never_a_label(labels: list[str]) -> None:
    assert map_word(BACKGROUND_NOISE, labels) is None


def test_special_folders_are_ignored_when_not_labels() -> None:
    # A _silence_ / _unknown_ folder must not be folded into _unknown_ (it is not a word).
    assert map_word(SILENCE, ["yes", "no", UNKNOWN]) is None
    assert map_word(SILENCE, resolve_labels("v2_35")) is None
    assert map_word(UNKNOWN, resolve_labels("v2_35")) is None
    assert map_word(UNKNOWN, ["yes", SILENCE]) is None
    # ... and used when they are.
    assert map_word(SILENCE, resolve_labels("v2_12")) == SILENCE
    assert map_word(UNKNOWN, resolve_labels("v2_12")) == UNKNOWN


def test_is_keyword() -> None:
    assert [is_keyword(x) for x in resolve_labels("v2_12")] == [False, False] + [True] * 10


@pytest.mark.parametrize(
    "spec",
    [
        "lights,music,_unknown_,_silence_",
        "[lights, music, _unknown_, _silence_]",
        " lights , music,_unknown_,_silence_,",
    ],
)
def test_labels_separated_by_commas_as_users_type_them(spec: str) -> None:
    assert resolve_labels(spec) == ["lights", "music", UNKNOWN, SILENCE]


def test_an_unknown_set_name_says_how_to_list_labels() -> None:
    with pytest.raises(ValueError, match="separated by commas") as err:
        resolve_labels("lights")
    assert "\n" not in str(err.value)
