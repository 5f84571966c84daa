"""drs.progress: the one progress printer of training (steps) and downloads (bytes), in a log and
on a terminal."""

from __future__ import annotations

import logging
import re

from drs.util.progress import MIB, StepProgress, TransferProgress, format_duration

log = logging.getLogger("drs.test_progress")


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.9, 61, 3599, 3600, 36000 + 62)] == [
        "0:00:00",
        "0:00:59",
        "0:01:01",
        "0:59:59",
        "1:00:00",
        "10:01:02",
    ]


def test_steps_in_a_log_every_nth_step_and_each_epoch_s_last(caplog, capsys):
    caplog.set_level(logging.INFO, logger=log.name)
    progress = StepProgress(log, "classifier", total_steps=10, every=2, tty=False)
    for epoch in (1, 2):
        for step in range(1, 6):
            progress.step(epoch, 2, step, 5, loss=0.5, lr=1e-3, images=4)
    lines = [r.getMessage() for r in caplog.records]
    assert [re.search(r"epoch (\d)/2 step (\d)/5", line).groups() for line in lines] == [
        ("1", "2"),
        ("1", "4"),
        ("1", "5"),
        ("2", "2"),
        ("2", "4"),
        ("2", "5"),
    ]
    assert re.fullmatch(
        r"classifier epoch 1/2 step 2/5 loss 0\.5000 lr 1\.00e-03 [\d.]+ img/s ETA \d+:\d\d:\d\d", lines[0]
    )
    assert capsys.readouterr().err == ""  # nothing on the terminal


def test_steps_on_a_terminal_are_one_bar_redrawn_each_step(caplog, capsys):
    caplog.set_level(logging.INFO, logger=log.name)
    progress = StepProgress(log, "refiner", total_steps=4, every=100, tty=True)
    for step in range(1, 5):
        progress.step(1, 1, step, 4, loss=1.0, lr=1e-4, images=2)
    err = capsys.readouterr().err
    assert not caplog.records
    draws = err.split("\r")[1:]
    assert [d[:26] for d in draws] == [
        "[######..................]",
        "[############............]",
        "[##################......]",
        "[########################]",
    ]
    assert err.endswith("\n") and err.count("\n") == 1  # the last step ends the line


def test_a_transfer_in_a_log_every_ten_percent(caplog, capsys):
    caplog.set_level(logging.INFO, logger=log.name)
    progress = TransferProgress(log, "http://x/voc.tar", start=25 * MIB, total=100 * MIB, tty=False)
    for done in range(26, 101):
        progress.update(done * MIB)
    progress.close(100 * MIB)
    percents = [int(re.search(r": +(\d+)%", r.getMessage()).group(1)) for r in caplog.records]
    assert percents == [30, 40, 50, 60, 70, 80, 90, 100]  # resumed at 25 %: the next tenth first
    assert caplog.records[0].getMessage().startswith("http://x/voc.tar:  30%  30.0/100.0 MiB  ")
    assert capsys.readouterr().err == ""


def test_a_transfer_of_unknown_size_on_a_terminal(caplog, capsys):
    caplog.set_level(logging.INFO, logger=log.name)
    progress = TransferProgress(log, "voc", start=0, total=None, tty=True)
    progress.update(MIB)  # within 0.2 s of the start: not redrawn yet
    progress.close(3 * MIB)
    err = capsys.readouterr().err
    assert not caplog.records
    assert re.fullmatch(r"\rvoc: 3\.0 MiB  [\d.]+ MiB/s\n", err)
