"""Frame-by-frame segmentation for an acquisition loop: frames in (any iterable), results out, in order.

    for out in segment_stream(segmenter, camera_frames(), diameter=30):
        show(out.labels); log(out.timing_ms)

While frame k is segmented, a reader thread already takes frame k+1 from the iterable (a camera read, a file
decode, any preprocessing the iterable does), so their times overlap instead of adding up. The reader holds at
most `prefetch` frames ahead (a bounded queue), so a fast source cannot fill memory; a slow consumer slows the
reader down. `segment_each` is the same with a callback per result.

Both are plain functions of a Segmenter (anything with its `segment` method); the reader thread is a daemon
and is told to stop when the stream ends, is closed early (break out of the loop) or fails."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from cellpoint.runtime.errors import CellpointError, OptionError

ERRORS = ("raise", "yield")


@dataclass(frozen=True)
class FrameResult:
    """One frame's outcome.

    index: the frame's position in the stream (0, 1, ...). frame: the image as the iterable gave it.
    result: its SegmentationResult (labels uint32 (H,W), table, diameter, ...), or None when it failed and
    errors="yield". error: the exception that frame raised (errors="yield"), else None.
    timing_ms: read — the iterable's time to give the frame (in the reader thread, overlapped with the previous
    frame's segmentation); wait — how long the segmentation waited for the frame (0 when reading was fully
    hidden); segment — `Segmenter.segment`; latency — from the frame leaving the iterable to its result
    (queueing + segment): the delay an acquisition loop sees. All in milliseconds."""
    index: int
    frame: np.ndarray
    result: object | None
    timing_ms: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def labels(self) -> np.ndarray:
        """The label image (uint32 (H,W)); raises the frame's error if it failed."""
        return self._ok().labels

    @property
    def table(self) -> dict[str, np.ndarray]:
        """The instance table (columns of (N,) arrays); raises the frame's error if it failed."""
        return self._ok().table

    def _ok(self):
        if self.error is not None:
            raise self.error
        return self.result


class _End:
    """The reader's last item: the iterable is exhausted (error None) or raised `error`."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def segment_stream(segmenter, frames: Iterable[np.ndarray], *, prefetch: int = 2, errors: str = "raise",
                   **segment_options) -> Iterator[FrameResult]:
    """Segment `frames` one by one, reading the next while the current one is segmented.

    segmenter: a Segmenter (shared with other threads if you like; `segment` is thread-safe).
    frames: any iterable of (H,W) or (H,W,C) arrays; it is read in a separate thread.
    prefetch: how many frames the reader may hold ahead (≥ 1).
    errors: "raise" — a frame that cannot be segmented (ImageError, OptionError, ...) ends the stream with
    its exception; "yield" — it is yielded as a FrameResult with `error` set and the stream goes on. An
    exception raised by the iterable itself always ends the stream (re-raised here).
    segment_options: keyword arguments of `Segmenter.segment` (diameter, channels, refine_diameter,
    pixel_size), the same for every frame.

    Yields FrameResult in frame order."""
    if errors not in ERRORS:
        raise OptionError(f"errors must be one of {', '.join(ERRORS)}, got {errors!r}")
    if int(prefetch) < 1:
        raise OptionError(f"prefetch must be at least 1, got {prefetch}")
    ready: queue.Queue = queue.Queue(maxsize=int(prefetch))
    stop = threading.Event()
    reader = threading.Thread(target=_read, args=(iter(frames), ready, stop), name="cellpoint-stream-reader",
                              daemon=True)
    reader.start()
    try:
        index = 0
        while True:
            waited = time.perf_counter()
            item = ready.get()
            got = time.perf_counter()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            frame, read_s, produced = item
            try:
                result, error = segmenter.segment(frame, **segment_options), None
            except (CellpointError, ValueError) as caught:
                if errors == "raise":
                    raise
                result, error = None, caught
            done = time.perf_counter()
            timing = {"read": read_s * 1e3, "wait": (got - waited) * 1e3, "segment": (done - got) * 1e3,
                      "latency": (done - produced) * 1e3}
            yield FrameResult(index, frame, result, timing, error)
            index += 1
    finally:
        stop.set()
        _drain(ready)  # frees a reader blocked on a full queue, and the frames it held
        reader.join(timeout=1.0)  # a reader blocked inside the iterable (a camera wait) is left to finish alone


def segment_each(segmenter, frames: Iterable[np.ndarray], callback: Callable[[FrameResult], object], *,
                 prefetch: int = 2, errors: str = "raise", **segment_options) -> int:
    """`segment_stream` with a callback: calls `callback(frame_result)` for each frame, in order, in this
    thread. Stops early when the callback returns False (exactly False; None goes on). Returns the number of
    frames segmented (failed ones included when errors="yield")."""
    count = 0
    stream = segment_stream(segmenter, frames, prefetch=prefetch, errors=errors, **segment_options)
    try:
        for out in stream:
            count += 1
            if callback(out) is False:
                break
    finally:
        stream.close()
    return count


def _read(frames: Iterator, ready: queue.Queue, stop: threading.Event) -> None:
    """The reader thread: put (frame, seconds the iterable took, time it was produced) until the iterable ends
    or fails (then put _End) or `stop` is set."""
    try:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                frame = next(frames)
            except StopIteration:
                break
            now = time.perf_counter()
            if not _put(ready, (frame, now - start, now), stop):
                return
        _put(ready, _End(), stop)
    except BaseException as error:  # handed to the consumer, which re-raises it in its own thread
        _put(ready, _End(error), stop)


def _put(ready: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item`, waiting while the queue is full; False if `stop` was set meanwhile."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _drain(ready: queue.Queue) -> None:
    while True:
        try:
            ready.get_nowait()
        except queue.Empty:
            return
