"""Which images of an output folder are done, and which one a process is working on.

An image counts as done only when its record `OUT/.cellpoint/done/<stem>.json` exists — written after all
of its outputs — lists every output asked for, and each of those files is still there with the size it
had (for a folder output, e.g. `<stem>.ome.zarr`, the folder's own size: it is there, renamed into place
whole). Work in progress is claimed with an exclusive lock on `OUT/.cellpoint/claims/<name>.lock`
(`filelock`: the operating system releases it when its process ends, however it ends, so a killed run's
claims are free at once and two runs on one folder never segment an image twice)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from cellpoint.runtime.image_io import atomic_write

STATE_DIR = ".cellpoint"
SHARED_TEMP_AGE_S = 60.0
"""A temporary file of a folder-wide output (the images table, the run report) older than this is left from
a run that died: those are written in well under a second."""


def record_path(out: Path, stem: str) -> Path:
    """Where the record of the outputs of `stem` (an input's stem, or <stem>_<plane>) is kept."""
    return out / STATE_DIR / "done" / f"{stem}.json"


def is_done(out: Path, stem: str, outputs: list[str]) -> bool:
    """Whether `stem` has a record that lists every file name in `outputs`, each present in `out` with its
    recorded size."""
    try:
        record = json.loads(record_path(out, stem).read_text())
        sizes = record["outputs"]
        return all(name in sizes and (out / name).stat().st_size == sizes[name] for name in outputs)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_record(out: Path, stem: str) -> dict | None:
    """The record of `stem` (see `mark_done`), or None when there is none or it cannot be read."""
    try:
        return json.loads(record_path(out, stem).read_text())
    except (OSError, ValueError):
        return None


def mark_done(out: Path, stem: str, outputs: list[str], row: dict) -> None:
    """Record `stem` as done: its output file names (in `out`) with their sizes, and `row` (its line of
    the images table). Written atomically, after the outputs."""
    record = {"outputs": {name: (out / name).stat().st_size for name in outputs}, "row": row}
    with atomic_write(record_path(out, stem)) as tmp:
        tmp.write_text(json.dumps(record))


def forget(out: Path, stem: str) -> None:
    """Remove the record of `stem` (before its outputs are written again)."""
    with contextlib.suppress(FileNotFoundError):
        record_path(out, stem).unlink()


def all_rows(out: Path) -> list[dict]:
    """The images-table rows of every record in `out`, sorted by image then plane."""
    rows = []
    for path in sorted((out / STATE_DIR / "done").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            rows.append(json.loads(path.read_text())["row"])
    return sorted(rows, key=lambda r: (str(r.get("image", "")), str(r.get("plane", ""))))


@contextlib.contextmanager
def claim(out: Path, name: str) -> Iterator[bool]:
    """Try to claim the input `name` (its stem) for this process: yields True while held, False when
    another live process holds it. The claim is released on exit, and by the OS if the process dies."""
    folder = out / STATE_DIR / "claims"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f"{name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def remove_stale_temps(out: Path, names: list[str]) -> int:
    """Remove the temporary files that `atomic_write` left for the output file `names` (in `out`) when a
    run died; call only while holding their input's claim (no live writer can own them then). Temporary
    folders (of a folder output such as an OME-Zarr store) are removed with their contents. Returns how
    many were removed."""
    removed = 0
    for name in names:
        path = Path(name)
        for tmp in out.glob(f".{path.stem}.*.tmp{path.suffix}"):
            with contextlib.suppress(OSError):
                if tmp.is_dir() and not tmp.is_symlink():
                    shutil.rmtree(tmp)
                else:
                    tmp.unlink()
                removed += 1
    return removed


def remove_stale_shared_temps(out: Path, names: list[str]) -> int:
    """Remove temporary files of the folder-wide outputs `names` older than SHARED_TEMP_AGE_S. Returns
    how many were removed."""
    removed, now = 0, time.time()
    for name in names:
        path = Path(name)
        for tmp in out.glob(f".{path.stem}.*.tmp{path.suffix}"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > SHARED_TEMP_AGE_S:
                    os.unlink(tmp)
                    removed += 1
    return removed
