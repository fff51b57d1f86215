"""Training you can watch (speech_gru/train/: callbacks, run_folder, training): ``curves.png``,
one line per epoch in a log file, TensorBoard event files beside the CSV logs."""

from __future__ import annotations

import importlib.util
import io
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from speech_gru.train import training
from speech_gru.train.callbacks import EpochLines, epoch_line
from speech_gru.train.run_folder import epoch_curves, plot_curves
from speech_gru.train.training import main, tensorboard_logger
from tests.helpers import recipe_args, tone_folder

TONES = {"yes": 500.0, "no": 700.0, "up": 900.0, "down": 1100.0, "cat": 1400.0}
LINE = re.compile(
    r"epoch (\d+)/2  train loss \d+\.\d{4}  val loss \d+\.\d{4}  "
    r"train acc [01]\.\d{4}  val acc [01]\.\d{4}  \d+\.\d s"
)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_fit_draws_curves_prints_a_line_per_epoch_and_logs_to_tensorboard(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tone_folder(tmp_path / "data", TONES, speakers=24, burst=True)
    run_dir = tmp_path / "run"
    main(
        recipe_args(
            "fit", data, run_dir,
            "--model.architecture.hidden_size", "16",
            "--trainer.max_epochs", "2",
            "--trainer.log_every_n_steps", "1",
            "--test_after_fit", "false",
            "--trainer.enable_progress_bar", "true",  # as users run it
        )
    )  # fmt: skip
    captured = capsys.readouterr()  # not a terminal, as a log file
    err = captured.err
    chatty = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert any(isinstance(f, training.QuietLightning) for f in chatty.filters)
    epochs = [int(match.group(1)) for match in LINE.finditer(err)]
    assert epochs == [1, 2], err[-3000:]
    # the progress bar counts epochs as the lines do: from 1, out of max_epochs
    bar = captured.out + captured.err
    assert "Epoch 2/2" in bar and "Epoch 0" not in bar and "Epoch 1/1" not in bar, bar[-2000:]

    curves = run_dir / "curves.png"
    assert curves.read_bytes().startswith(PNG) and curves.stat().st_size > 5000
    values = epoch_curves([run_dir / "logs" / "version_0" / "metrics.csv"])
    assert all(sorted(values[key]) == [1, 2] for key in values), values

    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed (pip install 'speech-gru[tensorboard]')")
    events = list((run_dir / "tensorboard").glob("version_0/events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert (run_dir / "logs" / "version_0" / "config.yaml").is_file()  # CSV logger first


def test_epoch_curves_average_steps_and_let_a_resumed_run_redo_an_epoch(tmp_path: Path) -> None:
    first, resumed = tmp_path / "v0.csv", tmp_path / "v1.csv"
    header = "epoch,step,train/loss,val/loss,val/acc,train/acc\n"
    first.write_text(
        header
        + "0,0,2.0,,,\n0,1,1.0,,,\n0,1,,1.2,0.5,\n0,1,,,,0.4\n"
        + "1,2,0.9,,,\n"  # epoch 2 cut short
    )
    resumed.write_text(header + "1,2,0.7,,,\n1,3,0.5,,,\n1,3,,0.8,0.7,\n1,3,,,,0.6\n")
    curves = epoch_curves([first, resumed])
    assert curves == {
        "train/loss": {1: 1.5, 2: pytest.approx(0.6)},
        "val/loss": {1: 1.2, 2: 0.8},
        "train/acc": {1: 0.4, 2: 0.6},
        "val/acc": {1: 0.5, 2: 0.7},
    }
    out = plot_curves(curves, tmp_path / "curves.png")
    assert out.read_bytes().startswith(PNG)
    assert plot_curves({"val/acc": {1: 0.5}}, tmp_path / "one.png").read_bytes().startswith(PNG)


def test_epoch_line_shows_missing_values_as_a_dash() -> None:
    line = epoch_line({"epoch": 3, "seconds": 41.23, "train/loss": 0.81234, "val/acc": 0.77})
    assert line == "epoch 3  train loss 0.8123  val loss -  train acc -  val acc 0.7700  41.2 s"
    assert epoch_line({"epoch": 1}, max_epochs=30).startswith("epoch 1/30  ")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def fake_trainer(**metrics: float) -> SimpleNamespace:
    metrics = {key.replace("_", "/", 1): torch.tensor(v) for key, v in metrics.items()}
    return SimpleNamespace(
        current_epoch=0, max_epochs=2, accumulate_grad_batches=1, sanity_checking=False,
        is_global_zero=True, callback_metrics=metrics,
    )  # fmt: skip


@pytest.mark.parametrize("terminal", [False, True])
def test_epoch_lines_wait_for_the_modules_train_accuracy_and_skip_a_terminal(
    terminal: bool,
) -> None:
    stream = Terminal() if terminal else io.StringIO()
    lines = EpochLines(stream)
    trainer = fake_trainer(val_loss=0.5, val_acc=0.75)
    lines.on_train_epoch_start(trainer, None)
    for loss in (1.0, 2.0):
        lines.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, 0)
    lines.on_validation_end(trainer, None)
    lines.on_train_epoch_end(trainer, None)
    assert stream.getvalue() == ""  # train/acc is logged after this hook
    trainer.callback_metrics["train/acc"] = torch.tensor(0.25)
    lines.on_train_end(trainer, None)
    expected = "epoch 1/2  train loss 1.5000  val loss 0.5000  train acc 0.2500  val acc 0.7500"
    assert stream.getvalue().startswith("" if terminal else expected)
    assert stream.getvalue().count("\n") == (0 if terminal else 1)


def test_tensorboard_is_used_when_installed_and_required_with_true(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tensorboard_logger(tmp_path, False) is None
    monkeypatch.setattr(training.importlib.util, "find_spec", lambda name: object())
    logger = tensorboard_logger(tmp_path, None)
    assert logger["class_path"].endswith("TensorBoardLogger")
    assert logger["init_args"]["save_dir"] == str(tmp_path)
    monkeypatch.setattr(training.importlib.util, "find_spec", lambda name: None)
    assert tensorboard_logger(tmp_path, None) is None
    with pytest.raises(SystemExit) as exit_info:
        tensorboard_logger(tmp_path, True)
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "pip install 'speech-gru[tensorboard]'" in message


def test_lightnings_start_up_chatter_is_left_out_and_the_rest_kept() -> None:
    """Tips for Lightning's cloud and 'GPU available: False' clutter every CPU run; a
    GPU that is there, and every other line, are still said."""
    training.quiet_lightning()
    training.quiet_lightning()  # once is enough: no second filter
    chatty = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert sum(isinstance(f, training.QuietLightning) for f in chatty.filters) == 1
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    chatty.addHandler(handler)
    level = chatty.level
    chatty.setLevel(logging.INFO)
    try:
        for line in (
            "💡 Tip: For seamless cloud logging, try installing litlogger",
            "GPU available: False, used: False",
            "TPU available: False, using: 0 TPU cores",
            "GPU available: True (cuda), used: True",
            "`Trainer.fit` stopped: `max_epochs=2` reached.",
        ):
            chatty.info(line)
    finally:
        chatty.removeHandler(handler)
        chatty.setLevel(level)
    assert said == [
        "GPU available: True (cuda), used: True",
        "`Trainer.fit` stopped: `max_epochs=2` reached.",
    ]
