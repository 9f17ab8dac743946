"""A progress line on stderr for admin commands: items, bytes, rate and ETA.

On a terminal the line is redrawn in place (at most 10 times a second); otherwise (logs,
pipes, tests) a full line is printed at most every `interval` seconds, and always at the end.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def human_seconds(seconds: float) -> str:
    """75 -> '1m15s'."""
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts items and bytes; `total` items (and optionally `total_bytes`) may grow as work is found."""

    def __init__(self, label: str, total: int = 0, total_bytes: int | None = None,
                 stream: TextIO | None = None, interval: float = 1.0) -> None:
        self.label = label
        self.total = total
        self.total_bytes = total_bytes
        self.done = 0
        self.bytes = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.1 if self.tty else interval
        self.started = time.monotonic()
        self._last = 0.0
        self._width = 0

    def add_total(self, count: int = 1) -> None:
        self.total += count

    def advance(self, items: int = 0, nbytes: int = 0) -> None:
        """Record finished items and transferred bytes; redraw when due."""
        self.done += items
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(final=False)

    def line(self, final: bool = False) -> str:
        """The progress text: an ETA while running, the elapsed time when final."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes / elapsed
        text = f"{self.label}: {self.done}/{self.total} files, {human_bytes(self.bytes)}"
        if self.total_bytes:
            text += f" of {human_bytes(self.total_bytes)}"
        text += f", {human_bytes(rate)}/s"
        if final:
            return text + f", done in {human_seconds(elapsed)}"
        eta = self._eta(elapsed)
        if eta is not None:
            text += f", ETA {human_seconds(eta)}"
        return text

    def _eta(self, elapsed: float) -> float | None:
        if self.total_bytes and self.bytes:
            return max(self.total_bytes - self.bytes, 0) * elapsed / self.bytes
        if self.done and self.total > self.done:
            return (self.total - self.done) * elapsed / self.done
        return None

    def _draw(self, final: bool) -> None:
        text = self.line(final)
        if self.tty:
            pad = " " * max(self._width - len(text), 0)
            self._width = len(text)
            self.stream.write("\r" + text + pad + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Draw the final line (with the elapsed time instead of an ETA)."""
        self.total = max(self.total, self.done)
        self._draw(final=True)

    def message(self, text: str) -> None:
        """Print a message line without garbling the progress line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()
