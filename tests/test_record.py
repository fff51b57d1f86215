"""Tests for speech_gru.cli.record and `speech-gru record`: the level check, the cut to one
second, file naming and speaker ids, with a fake sounddevice; then end to end through a
PulseAudio null sink (a virtual microphone) with words spoken by espeak-ng."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_gru.cli import record
from speech_gru.cli.main import main
from speech_gru.cli.record import RecordError, cut_clip, measure, refusal, speaker_id
from speech_gru.core.audio import SAMPLE_RATE, load_audio
from speech_gru.runtime import mic
from speech_gru.train.corpus import speaker_of
from tests.helpers import fake_sounddevice, require_espeak, start_pulse, tone, tone_burst

BLOCK = 1600  # the microphone's 0.1 s chunk at 16 kHz


def word(seconds: float = 1.0, start_s: float = 0.3, length_s: float = 0.4, amp: float = 0.3):
    """A take: a tone burst (the word) over quiet room noise, float32 at 16 kHz."""
    return tone_burst(seconds, start_s, length_s, freq=440.0, amp=amp, noise=0.001)


def room(seconds: float = 1.0, level: float = 0.001, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal(round(seconds * SAMPLE_RATE))).astype(np.float32)


def clipped(seconds: float = 1.0) -> np.ndarray:
    return np.clip(2.0 * tone(300.0, seconds=seconds), -1.0, 1.0)


def use_microphone(monkeypatch: pytest.MonkeyPatch, *takes: np.ndarray):
    """A fake 16 kHz microphone delivering one warm-up block, then ``takes`` back to back."""
    audio = np.concatenate([np.zeros(BLOCK, np.float32), *takes])
    audio = np.pad(audio, (0, -audio.size % BLOCK))
    blocks = [b.reshape(BLOCK, 1) for b in np.split(audio, audio.size // BLOCK)]
    fake = fake_sounddevice(blocks, rates=(SAMPLE_RATE,), max_channels=1)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    return fake


def run(tmp_path: Path, *takes: np.ndarray, monkeypatch: pytest.MonkeyPatch, **kwargs):
    """``record.record`` into ``tmp_path`` from a fake microphone delivering ``takes``;
    returns the files written and what it said."""
    use_microphone(monkeypatch, *takes)
    said: list[str] = []
    kwargs = {"seconds": 1.0, "countdown": 0.0, "speaker": "alice", "say": said.append, **kwargs}
    written = record.record(kwargs.pop("word", "yes"), tmp_path, kwargs.pop("count", 1), **kwargs)
    return written, said


# -- the level check --------------------------------------------------------------------------


def test_level_check_refuses_silence_and_clipping_then_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written, said = run(tmp_path, room(), clipped(), word(), monkeypatch=monkeypatch)
    prompts = [line for line in said if line.startswith('say "yes"')]
    assert prompts == ['say "yes" (1/1)...'] * 3
    problems = [line for line in said if not line.startswith(("say", "recording", "ok"))]
    assert problems[0].startswith("too quiet, take again")
    assert problems[1].startswith("clipped, move back from the microphone")
    assert len(problems) == 2 and said[-1].startswith("ok: 0.4")
    assert written == [tmp_path / "yes" / f"{speaker_id('alice')}_nohash_0.wav"]


def test_what_the_level_check_refuses() -> None:
    assert refusal(np.zeros(SAMPLE_RATE, np.float32), "yes").startswith("too quiet")
    assert refusal(word(amp=0.004), "yes").startswith("too quiet")  # loudest ~ -51 dBFS
    assert refusal(room(level=0.05), "yes").startswith("too quiet")  # loud room, no word
    assert refusal(word(amp=0.02), "yes") is None  # -37 dBFS: quiet but a word
    two_peaks = word()
    two_peaks[[100, 9000]] = 1.0
    assert refusal(two_peaks, "yes") is None  # a peak or two touching full scale: kept
    two_peaks[5000] = -1.0
    assert refusal(two_peaks, "yes").startswith("clipped")
    assert refusal(word(start_s=0.0), "yes").startswith("cut off at the start")
    assert refusal(word(start_s=0.7, length_s=0.3), "yes").startswith("cut off at the end")
    level = measure(word())
    assert abs(level.loudest_db - 20 * np.log10(0.3 / np.sqrt(2))) < 0.5
    assert abs(level.room_db + 60) < 1.5
    # The room: anything but digital zeros and clipping.
    assert refusal(room(), "_silence_") is None
    assert refusal(word(start_s=0.0), "_background_noise_") is None
    assert refusal(np.zeros(SAMPLE_RATE, np.float32), "_silence_").startswith("no sound at all")
    assert refusal(clipped(), "_silence_").startswith("clipped")


def test_too_many_refusals_end_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RecordError) as err:
        run(tmp_path, room(), room(), monkeypatch=monkeypatch, tries=2)
    assert 'take 1/1 of "yes" refused 2 times (last: too quiet)' in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "yes").exists()  # no empty word folder (a label without clips)


# -- trimming and centring ----------------------------------------------------------------


def centre_s(clip: np.ndarray) -> float:
    energy = clip.astype(np.float64) ** 2
    return float((energy * np.arange(clip.size)).sum() / energy.sum()) / SAMPLE_RATE


def test_the_clip_is_the_second_centred_on_the_word() -> None:
    take = word(seconds=2.0, start_s=0.3, length_s=0.4)  # the word: 0.3-0.7 s
    level = measure(take)
    assert abs(level.span[0] - 0.3 * SAMPLE_RATE) <= 320
    assert abs(level.span[1] - 0.7 * SAMPLE_RATE) <= 320
    clip = cut_clip(take, level.span)
    assert clip.shape == (SAMPLE_RATE,) and abs(centre_s(clip) - 0.5) < 0.02
    # Room sound around the word, not zeros: the clip is the take from 0.0 s to 1.0 s.
    np.testing.assert_array_equal(clip, take[:SAMPLE_RATE])
    late = word(seconds=2.0, start_s=1.5, length_s=0.4)  # 1.5-1.9 s: zeros after the take
    clip = cut_clip(late, measure(late).span)
    assert abs(centre_s(clip) - 0.5) < 0.02
    np.testing.assert_array_equal(
        clip[: round(0.8 * SAMPLE_RATE)], late[-round(0.8 * SAMPLE_RATE) :]
    )
    assert not clip[round(0.81 * SAMPLE_RATE) :].any()
    early = word(seconds=2.0, start_s=0.05, length_s=0.3)  # 0.05-0.35 s: zeros before it
    clip = cut_clip(early, measure(early).span)
    assert abs(centre_s(clip) - 0.5) < 0.02 and not clip[: round(0.29 * SAMPLE_RATE)].any()
    loud_room = word(seconds=2.0, start_s=0.8, length_s=0.3) + room(2.0, level=0.02)
    span = measure(loud_room).span  # the room is not counted as the word
    assert abs(span[0] / SAMPLE_RATE - 0.8) < 0.03 and abs(span[1] / SAMPLE_RATE - 1.1) < 0.03
    assert abs(centre_s(cut_clip(loud_room, span)) - 0.5) < 0.05


def test_a_word_over_a_second_keeps_its_loudest_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = word(seconds=2.0, start_s=0.2, length_s=1.5)
    long[round(1.0 * SAMPLE_RATE) : round(1.7 * SAMPLE_RATE)] *= 2.0  # louder: 1.0-1.7 s
    written, said = run(tmp_path, long, monkeypatch=monkeypatch, seconds=2.0)
    assert any(re.search(r"1\.5\d s long \(over 1 s\): kept its loudest second", line)
               for line in said)  # fmt: skip
    clip = load_audio(written[0])
    assert clip.shape == (SAMPLE_RATE,)
    assert np.abs(clip[-SAMPLE_RATE // 4 :]).max() > 0.5  # ends in the loud part


def test_countdown_audio_is_not_part_of_the_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written, said = run(tmp_path, clipped(0.5), word(), monkeypatch=monkeypatch, countdown=0.5)
    assert said[1:3] == ['get ready: "yes" (1/1)', 'say "yes" (1/1)...']
    assert said[3].startswith("ok") and len(written) == 1


# -- files, numbering and speakers ----------------------------------------------------------


def test_written_clips_are_one_second_16k_mono_int16_in_the_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    takes = word(2.0, start_s=0.3), word(2.0, start_s=1.2)  # word centres 0.5 s, 1.4 s
    written, _ = run(tmp_path, *takes, monkeypatch=monkeypatch, count=2, seconds=2.0)
    who = speaker_id("alice")
    assert [p.name for p in written] == [f"{who}_nohash_0.wav", f"{who}_nohash_1.wav"]
    for path in written:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            16000, 1, 16000, "PCM_16"
        )  # fmt: skip
        assert speaker_of(path) == who and path.parent == tmp_path / "yes"
        assert abs(centre_s(load_audio(path)) - 0.5) < 0.03


def test_numbering_continues_and_never_overwrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    who = speaker_id("alice")
    folder = tmp_path / "yes"
    folder.mkdir()
    for name in (f"{who}_nohash_0.wav", f"{who}_nohash_4.wav", "0123abcd_nohash_9.wav"):
        (folder / name).write_bytes(b"kept")
    (folder / "notes.txt").write_text("x")
    assert record.next_index(folder, who) == 5
    assert record.next_index(folder, "0123abcd") == 10
    assert record.next_index(tmp_path / "missing", who) == 0
    written, _ = run(tmp_path, word(), monkeypatch=monkeypatch)
    assert written == [folder / f"{who}_nohash_5.wav"]
    # A file that appears between numbering and writing is skipped, not replaced.
    monkeypatch.setattr(record, "next_index", lambda folder, speaker: 4)
    path = record.save_take(folder, who, word())
    assert path.name == f"{who}_nohash_6.wav"
    assert (folder / f"{who}_nohash_4.wav").read_bytes() == b"kept"


def test_speaker_id_is_stable_and_separates_people(monkeypatch: pytest.MonkeyPatch) -> None:
    alice = speaker_id("alice")
    assert alice == hashlib.sha1(b"alice").hexdigest()[:8] == "522b276a"  # pinned: never change
    assert speaker_id(" Alice ") == alice and speaker_id("bob") != alice
    assert len(alice) == 8 and int(alice, 16) >= 0
    assert speaker_of(f"{alice}_nohash_3.wav") == alice
    with pytest.raises(RecordError):
        speaker_id("  ")
    monkeypatch.setattr(record.getpass, "getuser", lambda: "alice")
    assert record.default_speaker() == "alice"

    def nobody() -> str:
        raise KeyError("getpwuid(): uid not found: 1234")

    monkeypatch.setattr(record.getpass, "getuser", nobody)
    with pytest.raises(RecordError, match="give --speaker NAME"):
        record.default_speaker()


def test_default_speaker_is_the_user_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record.getpass, "getuser", lambda: "carol")
    written, said = run(tmp_path, word(), monkeypatch=monkeypatch, speaker=None)
    assert speaker_of(written[0]) == speaker_id("carol")
    assert f"speaker {speaker_id('carol')} (user name carol)" in said[0]


def test_room_recordings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written, said = run(
        tmp_path, np.zeros(2 * SAMPLE_RATE, np.float32), room(2.0), room(2.0, seed=2),
        monkeypatch=monkeypatch, word="_silence_", count=2, seconds=2.0,
    )  # fmt: skip
    assert said[1] == 'stay quiet "_silence_" (1/2)...' and said[2].startswith("no sound")
    assert [sf.info(p).frames for p in written] == [SAMPLE_RATE, SAMPLE_RATE]
    assert all(p.parent.name == "_silence_" for p in written)
    noise = room(3.0)
    written, _ = run(tmp_path, noise, monkeypatch=monkeypatch, word="_background_noise_",
                     seconds=3.0)  # fmt: skip
    assert written[0].parent.name == "_background_noise_"
    np.testing.assert_allclose(load_audio(written[0]), noise, atol=1 / 32768)


# -- the command line -------------------------------------------------------------------------


def test_cli_writes_takes_and_prints_their_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    use_microphone(monkeypatch, room(), word(), word(start_s=0.4))
    args = ["record", "yes", "--out", str(tmp_path), "--count", "2", "--seconds", "1",
            "--countdown", "0", "--speaker", "alice", "--device", "USB"]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    who = speaker_id("alice")
    assert out.splitlines() == [str(tmp_path / "yes" / f"{who}_nohash_{i}.wav") for i in (0, 1)]
    assert "too quiet, take again" in err
    assert err.splitlines()[-1] == f"done: 2 takes in {tmp_path / 'yes'}"


@pytest.mark.parametrize(
    ("word_arg", "problem"),
    [
        ("../yes", "not usable as a folder and label name"),
        ("", "not usable"),
        (".hidden", "not usable"),
        ("a,b", "not usable"),
        ("bad\x1bname", "not usable"),
        ("_unknown_", "record other words by name"),
    ],
)
def test_bad_words_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, word_arg: str, problem: str
) -> None:
    assert main(["record", word_arg, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and problem in err
    assert not list(tmp_path.iterdir())  # nothing created


def test_setup_problems_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def error_of(*args: str) -> str:
        assert main(["record", "yes", "--countdown", "0", "--speaker", "a", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        return err

    afile = tmp_path / "file"
    afile.write_text("x")
    assert "not a folder" in error_of("--out", str(afile))
    assert "not a folder" in error_of("--out", str(afile / "sub"))
    assert "at least 1 s" in error_of("--out", str(tmp_path), "--seconds", "0.5")

    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice([], max_channels=0))
    assert "no audio input device" in error_of("--out", str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()  # the folders it made are gone again

    def no_portaudio():
        raise mic.MicrophoneError("PortAudio library not found; run: apt-get install libportaudio2")

    monkeypatch.setattr(mic, "_import_sounddevice", no_portaudio)
    assert "apt-get install libportaudio2" in error_of("--out", str(tmp_path))


def test_a_failed_start_removes_only_the_folders_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``..`` through a folder it makes: the user's empty word folder (and its parent) stay."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mywords" / "lights").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice([], max_channels=0))
    for out in ("nothere/../mywords", "nothere/deeper/../../mywords", "mywords/new/.."):
        args = ["record", "lights", "--out", out, "--countdown", "0", "--speaker", "a"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no audio input device" in err
        assert (tmp_path / "mywords" / "lights").is_dir()  # the user's folder is kept
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mywords"]  # "nothere" is gone
        assert [p.name for p in (tmp_path / "mywords").iterdir()] == ["lights"]


def test_a_word_too_long_for_a_file_name_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    use_microphone(monkeypatch, word())
    out = tmp_path / "data"
    assert main(["record", "a" * 300, "--out", str(out), "--countdown", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: word ") and "too long" in err
    assert "Traceback" not in err and len(err) < 200
    assert not out.exists()


def test_a_take_refused_too_often_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    use_microphone(monkeypatch, word(), *[clipped()] * record.MAX_TRIES)
    args = ["record", "yes", "--out", str(tmp_path), "--count", "2", "--seconds", "1",
            "--countdown", "0", "--speaker", "alice"]  # fmt: skip
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1  # the first take was kept
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        'error: take 2/2 of "yes" refused 5 times (last: clipped); check the microphone and '
        "its input level (--device; speech-gru stream --list-devices)"
    ]
    assert "1 of 2 takes written" in err


def test_ctrl_c_keeps_the_takes_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    use_microphone(monkeypatch, word(), word())
    calls = []

    def keep_then_interrupt(take: np.ndarray, word: str) -> str | None:
        calls.append(word)
        if len(calls) > 1:
            raise KeyboardInterrupt  # Ctrl-C during the second take
        return None

    monkeypatch.setattr(record, "refusal", keep_then_interrupt)
    args = ["record", "yes", "--out", str(tmp_path), "--count", "2", "--seconds", "1",
            "--countdown", "0", "--speaker", "alice"]  # fmt: skip
    assert main(args) == 130
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and Path(out.strip()).is_file()
    assert err.splitlines()[-1] == "stopped: 1 of 2 takes written"


# -- end to end: a virtual microphone ----------------------------------------------------


@pytest.fixture
def pulse(tmp_path: Path):
    daemon = start_pulse(tmp_path / "pulse")
    yield daemon
    daemon.stop()


@pytest.mark.slow
def test_record_from_a_virtual_microphone(tmp_path: Path, pulse) -> None:
    """`speech-gru record` against a PulseAudio null sink's monitor: on each prompt the test
    plays nothing (the monitor gives zeros), a clipped word, then a good word twice."""
    require_espeak()
    spoken = tmp_path / "espeak.wav"
    subprocess.run(["espeak-ng", "-w", str(spoken), "yes"], check=True)
    yes = load_audio(spoken)
    yes = spoken_word = 0.5 * yes / np.abs(yes).max()
    yes = np.concatenate([np.zeros(round(0.3 * SAMPLE_RATE), np.float32), yes])  # reaction time
    good, loud = tmp_path / "good.wav", tmp_path / "clipped.wav"
    sf.write(good, yes, SAMPLE_RATE, subtype="PCM_16")
    sf.write(loud, np.clip(4 * yes, -1, 1), SAMPLE_RATE, subtype="PCM_16")
    out = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "speech_gru.cli", "record", "yes", "--out", str(out),
         "--count", "2", "--seconds", "2", "--countdown", "0", "--speaker", "tester",
         "--device", "pulse"],
        env=pulse.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(90, process.kill)
    watchdog.start()
    plays = iter([None, loud, good, good])
    lines = []
    try:
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if line.startswith('say "yes"'):
                played = next(plays, None)
                if played is not None:
                    pulse.play(played)
        stdout = process.stdout.read()
        process.wait(timeout=30)
    finally:
        watchdog.cancel()
        process.kill()
    log = "\n".join(lines)
    assert process.returncode == 0, log
    assert lines[0].startswith(f'recording "yes" into {out / "yes"} from microphone'), log
    assert [line.split(",")[0].split(":")[0] for line in lines[1:]] == [
        'say "yes" (1/2)...', "too quiet",
        'say "yes" (1/2)...', "clipped",
        'say "yes" (1/2)...', "ok",
        'say "yes" (2/2)...', "ok",
        "done",
    ], log  # fmt: skip
    who = speaker_id("tester")
    paths = [Path(p) for p in stdout.splitlines()]
    assert paths == [out / "yes" / f"{who}_nohash_{i}.wav" for i in (0, 1)]
    for path in paths:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            16000, 1, 16000, "PCM_16"
        )  # fmt: skip
        assert speaker_of(path) == who
        clip = load_audio(path)
        assert 0.3 < np.abs(clip).max() < 0.99
        assert abs(centre_s(clip) - 0.5) < 0.1, path  # the word in the middle
        fit = np.correlate(clip, spoken_word, "valid").max() / np.sum(spoken_word**2)
        assert 0.95 < fit < 1.05, path  # the whole word, as played


# -- phrases ----------------------------------------------------------------------------------


def test_a_phrase_keeps_its_whole_length_in_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1.6 s "phrase" in a 3 s take (a phrase's default): the clip is its span plus 0.3 s,
    centred on it, in OUT/hey_computer, named by the speaker; nothing else is written."""
    take = word(seconds=3.0, start_s=0.6, length_s=1.6)
    written, said = run(tmp_path, take, monkeypatch=monkeypatch, word="Hey  Computer",
                        seconds=None)  # fmt: skip
    who = speaker_id("alice")
    assert written == [tmp_path / "hey_computer" / f"{who}_nohash_0.wav"]
    assert [p.name for p in tmp_path.iterdir()] == ["hey_computer"]
    assert said[0].startswith(f'recording "hey computer" into {tmp_path / "hey_computer"}')
    assert "3 s a take" in said[0] and said[1] == 'say "hey computer" (1/1)...'
    assert said[-1].startswith("ok: 1.6")
    clip = load_audio(written[0])
    span = measure(take).span
    assert clip.size == span[1] - span[0] + round(0.3 * SAMPLE_RATE)
    assert 1.85 < clip.size / SAMPLE_RATE < 1.95 and speaker_of(written[0]) == who
    assert abs(centre_s(clip) - clip.size / SAMPLE_RATE / 2) < 0.03
    burst = take[round(0.6 * SAMPLE_RATE) : round(2.2 * SAMPLE_RATE)]
    assert np.sum(clip**2) == pytest.approx(np.sum(burst**2), rel=0.02)  # all of it


def test_a_phrase_over_the_longest_clip_keeps_its_loudest_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    take = word(seconds=4.0, start_s=0.5, length_s=3.0)
    written, said = run(tmp_path, take, monkeypatch=monkeypatch, word="hey computer",
                        seconds=4.0)  # fmt: skip
    assert sf.info(written[0]).frames == round(2.5 * SAMPLE_RATE)
    assert any(re.search(r"3\.0\d s long \(over 2\.5 s\): kept its loudest 2\.5 s", line)
               for line in said)  # fmt: skip
    short_take = word(seconds=1.5, start_s=0.1, length_s=1.3)  # span + 0.3 s: over the take
    written, _ = run(tmp_path, short_take, monkeypatch=monkeypatch, word="hey computer",
                     seconds=1.5)  # fmt: skip
    np.testing.assert_allclose(load_audio(written[0]), short_take, atol=1 / 32768)  # the take


def test_cli_records_a_phrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    use_microphone(monkeypatch, word(seconds=3.0, start_s=0.5, length_s=1.4))
    args = ["record", "hey computer", "--out", str(tmp_path), "--countdown", "0",
            "--count", "1", "--speaker", "alice"]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    folder = tmp_path / "hey_computer"
    assert out.splitlines() == [str(folder / f"{speaker_id('alice')}_nohash_0.wav")]
    assert err.splitlines()[-1] == f"done: 1 takes in {folder}"
    assert sf.info(out.strip()).frames > SAMPLE_RATE


@pytest.mark.parametrize(
    ("phrase", "problem"),
    [("hey computer!", "use letters a-z only"), ("hey 2 you", "use letters a-z only"),
     ("a b c d e f", "too many words")],
)  # fmt: skip
def test_bad_phrases_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, phrase: str, problem: str
) -> None:
    assert main(["record", phrase, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: word {phrase!r}: ") and problem in err
    assert not list(tmp_path.iterdir())
