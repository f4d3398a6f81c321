"""`runtime.stream`: frames in, results out in order, reading overlapped with segmenting, bounded read-ahead,
errors, early stop, and the callback form."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cellpoint.runtime.errors import ImageError, OptionError
from cellpoint.runtime.stream import FrameResult, segment_each, segment_stream
from conftest import synthetic_nuclei


class SlowSegmenter:
    """Stands in for a Segmenter: takes `seconds` per frame, returns the frame's mean as its result and
    raises ImageError for a frame of NaN (as the real one does)."""

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds
        self.calls: list[dict] = []

    def segment(self, image, **options):
        self.calls.append(options)
        time.sleep(self.seconds)
        if np.isnan(image).any():
            raise ImageError("image contains NaN or infinite values")
        return float(image.mean())


def slow_frames(n: int, seconds: float):
    for k in range(n):
        time.sleep(seconds)
        yield np.full((8, 8), k, np.float32)


def test_results_match_the_segmenter_frame_by_frame_in_order():
    from cellpoint.runtime import Segmenter
    frames = [synthetic_nuclei((128, 160), n=5, seed=k)[0] for k in range(3)]
    with Segmenter("objectness-nuclei") as segmenter:
        outs = list(segment_stream(segmenter, iter(frames), diameter=20.0))
        for k, (frame, out) in enumerate(zip(frames, outs)):
            alone = segmenter.segment(frame, diameter=20.0)
            assert out.index == k and out.frame is frame and out.error is None
            assert np.array_equal(out.labels, alone.labels) and out.result.diameter_source == alone.diameter_source
            labels, table = out.result
            assert list(table) == list(out.table)
            assert {"read", "wait", "segment", "latency"} <= set(out.timing_ms)
            assert out.timing_ms["latency"] >= out.timing_ms["segment"] > 0
    assert len(outs) == 3


def test_reading_the_next_frame_overlaps_segmenting_this_one():
    n, step = 6, 0.1
    start = time.perf_counter()
    outs = list(segment_stream(SlowSegmenter(step), slow_frames(n, step)))
    elapsed = time.perf_counter() - start
    assert [o.result for o in outs] == list(range(n))
    assert elapsed < 0.8 * (2 * n * step), elapsed          # sequential would take 1.2 s; overlapped about 0.7 s
    assert all(o.timing_ms["read"] >= step * 1e3 * 0.9 for o in outs)
    assert np.median([o.timing_ms["wait"] for o in outs[1:]]) < step * 1e3 / 2   # the reads were hidden


def test_read_ahead_is_bounded_and_an_early_stop_ends_the_reader():
    produced = []

    def endless():
        k = 0
        while True:
            produced.append(k)
            yield np.full((4, 4), k, np.float32)
            k += 1

    before = threading.active_count()
    stream = segment_stream(SlowSegmenter(0.02), endless(), prefetch=2)
    for out in stream:
        if out.index == 4:
            break
    stream.close()
    time.sleep(0.2)
    assert len(produced) <= 5 + 2 + 1                        # consumed, the queue, the one in the reader's hand
    assert threading.active_count() == before               # the reader thread has ended


def test_a_bad_frame_raises_or_is_yielded():
    frames = [np.zeros((4, 4), np.float32), np.full((4, 4), np.nan, np.float32), np.ones((4, 4), np.float32)]
    with pytest.raises(ImageError, match="NaN"):
        list(segment_stream(SlowSegmenter(), iter(frames)))
    outs = list(segment_stream(SlowSegmenter(), iter(frames), errors="yield"))
    assert [o.result for o in outs] == [0.0, None, 1.0]
    assert isinstance(outs[1].error, ImageError)
    with pytest.raises(ImageError):
        outs[1].labels


def test_an_error_of_the_frame_source_reaches_the_consumer():
    def broken():
        yield np.zeros((4, 4), np.float32)
        raise OSError("camera unplugged")

    seen = []
    with pytest.raises(OSError, match="camera unplugged"):
        for out in segment_stream(SlowSegmenter(), broken()):
            seen.append(out.index)
    assert seen == [0]


def test_options_are_checked_and_passed_on():
    segmenter = SlowSegmenter()
    list(segment_stream(segmenter, slow_frames(2, 0), diameter=30.0, channels=[0]))
    assert segmenter.calls == [{"diameter": 30.0, "channels": [0]}] * 2
    with pytest.raises(OptionError):
        next(segment_stream(segmenter, [], errors="ignore"))
    with pytest.raises(OptionError):
        next(segment_stream(segmenter, [], prefetch=0))


def test_callback_form_calls_back_in_order_and_can_stop():
    got: list[FrameResult] = []
    assert segment_each(SlowSegmenter(), slow_frames(5, 0), got.append) == 5
    assert [o.index for o in got] == list(range(5)) and [o.result for o in got] == list(range(5))
    count = segment_each(SlowSegmenter(), slow_frames(100, 0), lambda out: out.index < 2)
    assert count == 3
