"""Progress of a long job: one live line on a terminal, redrawn in place, or log lines in a log.

:class:`LiveLine` is the printer; :class:`StepProgress` (training steps, drs.training.loop) and
:class:`TransferProgress` (downloaded bytes, drs.data.download) say what a line holds and when a
log gets one.
"""

from __future__ import annotations

import logging
import sys
import time

MIB = 1 << 20


class LiveLine:
    """Writes progress lines: on a terminal (``tty``) one line redrawn in place, at most every
    ``redraw_s`` seconds, with a bar when the fraction done is known; else to ``log``, only the
    lines the caller marks."""

    def __init__(self, log: logging.Logger, tty: bool, redraw_s: float = 0.0) -> None:
        self.log, self.tty, self.redraw_s = log, tty, redraw_s
        self.last = time.monotonic()

    def show(self, text: str, *, log: bool, fraction: float | None = None, final: bool = False) -> None:
        """Show ``text``: redrawn on a terminal (the final line ends it), logged if ``log``."""
        if not self.tty:
            if log:
                self.log.info("%s", text)
            return
        now = time.monotonic()
        if not final and now - self.last < self.redraw_s:
            return
        if fraction is not None:
            width = 24
            filled = int(width * fraction)
            text = f"[{'#' * filled}{'.' * (width - filled)}] {text}"
        sys.stderr.write("\r" + text + ("\n" if final else ""))
        sys.stderr.flush()
        self.last = now


def format_duration(seconds: float) -> str:
    """``seconds`` as H:MM:SS."""
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StepProgress:
    """Training steps: a log line every ``every`` steps and at each epoch's last; on a terminal a
    bar over all ``total_steps``, redrawn each step."""

    def __init__(self, log: logging.Logger, name: str, total_steps: int, every: int, tty: bool) -> None:
        self.name, self.total, self.every = name, total_steps, max(1, every)
        self.line = LiveLine(log, tty)
        self.start = time.perf_counter()
        self.done = 0
        self.images = 0

    def due(self, step: int, steps: int) -> bool:
        """Whether :meth:`step` at ``step`` of ``steps`` shows a line (and so needs the loss)."""
        return self.line.tty or not step % self.every or step == steps

    def step(self, epoch: int, epochs: int, step: int, steps: int, loss: float | None, lr: float, images: int) -> None:
        """Count a step; show its line when :meth:`due` (``loss`` may be None otherwise)."""
        self.done += 1
        self.images += images
        logged = not step % self.every or step == steps
        if not self.due(step, steps):
            return
        elapsed = time.perf_counter() - self.start
        rate = self.images / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) * elapsed / self.done
        text = (
            f"{self.name} epoch {epoch}/{epochs} step {step}/{steps} loss {loss:.4f} lr {lr:.2e} "
            f"{rate:.1f} img/s ETA {format_duration(eta)}"
        )
        self.line.show(text, log=logged, fraction=self.done / self.total, final=step == steps)


class TransferProgress:
    """A transfer from byte ``start`` of ``total`` (None: unknown): a log line every 10 % or
    10 s; on a terminal a line redrawn at most every 0.2 s, and a last one at :meth:`close`."""

    def __init__(self, log: logging.Logger, label: str, start: int, total: int | None, tty: bool) -> None:
        self.label = label
        self.start = start
        self.total = total
        self.line = LiveLine(log, tty, redraw_s=0.2)
        self.t0 = self.last_log = time.monotonic()
        self.next_percent = self._percent(start) // 10 * 10 + 10

    def _percent(self, done: int) -> int:
        return int(done * 100 / self.total) if self.total else 0

    def _text(self, done: int) -> str:
        rate = (done - self.start) / MIB / max(time.monotonic() - self.t0, 1e-6)
        if self.total:
            return (
                f"{self.label}: {self._percent(done):3d}%  {done / MIB:.1f}/{self.total / MIB:.1f} MiB"
                f"  {rate:.1f} MiB/s"
            )
        return f"{self.label}: {done / MIB:.1f} MiB  {rate:.1f} MiB/s"

    def update(self, done: int) -> None:
        now = time.monotonic()
        logged = not self.line.tty and (
            (self.total and self._percent(done) >= self.next_percent) or now - self.last_log >= 10
        )
        if logged:
            self.next_percent = self._percent(done) // 10 * 10 + 10
            self.last_log = now
        self.line.show(self._text(done), log=bool(logged))

    def close(self, done: int) -> None:
        self.line.show(self._text(done), log=False, final=True)
