"""Progress and status for people, on stderr (stdout stays clean for tables and JSON)."""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Optional


def stderr_is_tty(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A progress bar on stderr for work longer than a second.

        with Progress(total=len(items), what="quantizing", quiet=args.quiet) as bar:
            for item in items:
                ...
                bar.advance()

    Drawn only on a terminal, only once `delay` seconds have passed (short work prints nothing),
    and at most 10 times a second. Not on a terminal (CI, pipes), it prints nothing; `--quiet`
    silences it everywhere. `total=None` shows a counter without a bar.
    """

    def __init__(self, total: Optional[int] = None, what: str = "", quiet: bool = False,
                 stream=None, delay: float = 1.0, width: int = 28):
        self.total = total
        self.what = what
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = not quiet and stderr_is_tty(self.stream)
        self.delay = delay
        self.width = width
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False
        self._status = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def advance(self, n: int = 1, status: Optional[str] = None) -> None:
        self.done += n
        if status is not None:
            self._status = status
        self._maybe_draw()

    def set_status(self, status: str) -> None:
        self._status = status
        self._maybe_draw()

    def _maybe_draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and (now - self._start < self.delay or now - self._last_draw < 0.1):
            return
        self._last_draw = now
        elapsed = now - self._start
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            eta = (elapsed / frac - elapsed) if frac > 0 else float("nan")
            eta_s = f" eta {eta:4.0f}s" if math.isfinite(eta) and frac < 1 else ""
            text = f"{self.what} [{bar}] {self.done}/{self.total} {elapsed:4.0f}s{eta_s}"
        else:
            text = f"{self.what} {self.done} {elapsed:4.0f}s"
        if self._status:
            text += f"  {self._status}"
        cols = 100
        try:
            cols = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, AttributeError, ValueError):
            pass
        self.stream.write("\r" + text[:cols - 1].ljust(cols - 1))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * 99 + "\r")
            self.stream.flush()
            self._drawn = False


def say(message: str, quiet: bool = False, stream=None) -> None:
    """A status line for people (stderr, so stdout stays clean for tables and JSON)."""
    if not quiet:
        stream = stream or sys.stderr
        stream.write(message + "\n")
        stream.flush()


def bars(quiet: bool = False, stream=None):
    """A progress callback `(what, done, total)` for the layers below the report (the model file
    writer, the model download) that draws one Progress bar per `what` and closes it when done
    reaches total."""
    open_bars: dict = {}

    def progress(what: str, done: int, total: int) -> None:
        bar = open_bars.get(what)
        if bar is None:
            bar = open_bars[what] = Progress(total=total, what=what, quiet=quiet, stream=stream)
        bar.advance(done - bar.done)
        if total and done >= total:
            bar.close()
            del open_bars[what]
    return progress
