"""Progress of a batch that reads well on a terminal and in a log.

On a terminal: a tqdm bar, with each image's line printed above it. Elsewhere (a log file, a pipe, a
scheduler's job output): each image's line, plus a progress line every `every` images or `seconds`
seconds, whichever comes first — images done of all, failed, rate and time left — and, while one image
takes long, its tiles done every `seconds`."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def format_duration(seconds: float) -> str:
    """Seconds as '42 s', '7 min', '3.2 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class BatchProgress:
    """Counts images of a batch and reports them on `stream` (see the module).

    total: images in the batch; terminal: draw a bar (default: whether `stream` is a terminal);
    clock: seconds, monotonic (for tests)."""

    def __init__(self, total: int, stream: TextIO | None = None, terminal: bool | None = None,
                 every: int = 10, seconds: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.total, self.every, self.seconds, self.clock = total, every, seconds, clock
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.failed = self.skipped = 0
        self.start = self._last = clock()
        self._since_line = 0
        isatty = getattr(self.stream, "isatty", lambda: False)
        self._bar = None
        if terminal if terminal is not None else isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit="img", file=self.stream)

    def message(self, text: str) -> None:
        """Print one line (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def image_finished(self, failed: bool = False, skipped: bool = False) -> None:
        """Count one input as finished (segmented, failed, or skipped because its outputs exist)."""
        self.done += 1
        self.failed += bool(failed)
        self.skipped += bool(skipped)
        if self._bar is not None:
            self._bar.update(1)
            return
        self._since_line += 1
        now = self.clock()
        if self._since_line >= self.every or now - self._last >= self.seconds or self.done == self.total:
            self.message(self.summary())
            self._since_line, self._last = 0, now

    def summary(self) -> str:
        """'progress: 12/40 images (1 failed, 3 skipped), 0.85 img/s, ~33 s left'."""
        elapsed = max(self.clock() - self.start, 1e-9)
        worked = self.done - self.skipped
        rate = worked / elapsed
        left = self.total - self.done
        notes = [f"{self.failed} failed"] + ([f"{self.skipped} skipped"] if self.skipped else [])
        text = f"progress: {self.done}/{self.total} images ({', '.join(notes)}), {rate:.2f} img/s"
        if left and rate > 0:
            text += f", ~{format_duration(left / rate)} left"
        return text

    def tile_reporter(self, where: str, unit: str = "tiles") -> Callable[[int, int], None]:
        """A callback for `Segmenter.segment(on_tile=)` that prints '<where>: tiles 12/48' (or another `unit`)
        every `seconds` (not on a terminal, where the bar shows the run is alive)."""
        last = [self.clock()]

        def report(done: int, total: int) -> None:
            now = self.clock()
            if self._bar is None and total > 1 and now - last[0] >= self.seconds:
                self.message(f"{where}: {unit} {done}/{total}")
                last[0] = now
        return report

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
