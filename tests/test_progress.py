"""Progress of a batch in a log (stderr not a terminal): lines every N images or T seconds, tiles of a long
image."""
import io

from cellpoint.runtime.cli.progress import BatchProgress, format_duration


def test_log_lines_every_n_images_or_t_seconds_with_rate_and_time_left():
    now = [0.0]
    stream = io.StringIO()
    progress = BatchProgress(30, stream=stream, terminal=False, every=10, seconds=60.0, clock=lambda: now[0])
    for i in range(12):
        now[0] += 2.0
        progress.image_finished(failed=(i == 3))
    lines = stream.getvalue().splitlines()
    assert lines == ["progress: 10/30 images (1 failed), 0.50 img/s, ~40 s left"]
    now[0] += 61.0  # a slow image: a line on time, not count
    progress.image_finished(skipped=True)
    assert stream.getvalue().splitlines()[-1].startswith("progress: 13/30 images (1 failed, 1 skipped)")
    for _ in range(17):
        progress.image_finished()
    assert stream.getvalue().splitlines()[-1].startswith("progress: 30/30 images")  # always a last line


def test_tiles_of_a_long_image_every_t_seconds_and_nothing_on_a_terminal():
    now = [0.0]
    stream = io.StringIO()
    progress = BatchProgress(1, stream=stream, terminal=False, seconds=10.0, clock=lambda: now[0])
    report = progress.tile_reporter("big.tif")
    for done in range(1, 49):
        now[0] += 1.0
        report(done, 48)
    assert stream.getvalue().splitlines() == [f"big.tif: tiles {k}/48" for k in (10, 20, 30, 40)]
    quiet = io.StringIO()
    bar = BatchProgress(1, stream=quiet, terminal=True, seconds=0.0)
    bar.tile_reporter("big.tif")(1, 4)
    bar.close()
    assert "tiles" not in quiet.getvalue()


def test_format_duration():
    assert [format_duration(s) for s in (42, 420, 12000)] == ["42 s", "7 min", "3.3 h"]
