"""The batch report `OUT/cellpoint_run.json`: what a run was asked, what it did, and what failed and why.

Written atomically after images (at most every few seconds) and at the end, so a run that dies leaves the
report of what it had finished."""
from __future__ import annotations

import json
import platform
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cellpoint.runtime.cli.exits import OutputUnwritable, describe_os_error
from cellpoint.runtime.image_io import atomic_write

REPORT_FILE = "cellpoint_run.json"


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_report(inputs: list[Path], options: dict) -> dict:
    """A report for a run over `inputs` with the command's `options` (JSON-able); status "running"."""
    return {
        "status": "running", "exit_code": None, "started": now_iso(), "finished": None,
        "versions": {"cellpoint": _version("cellpoint"), "onnxruntime": _version("onnxruntime"),
                     "numpy": _version("numpy"), "opencv": _version("opencv-python-headless"),
                     "python": sys.version.split()[0], "platform": platform.platform()},
        "command": sys.argv, "options": options, "model": None, "provider": None,
        "inputs": [str(p) for p in inputs], "images": [], "skipped": [], "failures": [],
        "counts": {"segmented": 0, "skipped": 0, "failed": 0},
        "timings": {"load_s": None, "total_s": None},
    }


def describe_model(segmenter) -> dict:
    """The model entry of a report: name, when it was made, folder, the weights' sha256, decoder, diameter."""
    card = segmenter.package.card
    return {"name": segmenter.name, "created": card.created,
            "folder": str(segmenter.package.path), "sha256": card.weights.sha256,
            "decoder": card.decoder.name, "diameter_px": segmenter.diameter,
            "precision": getattr(segmenter, "precision", "fp32")}


class ReportWriter:
    """Writes a report dict to `path`, atomically; `maybe_write` at most every `seconds`."""

    def __init__(self, path: Path, seconds: float = 5.0):
        self.path, self.seconds, self._last = path, seconds, 0.0
        self.started = time.monotonic()

    def write(self, report: dict) -> None:
        """Write now; OutputUnwritable (exit 4) if the file cannot be written."""
        report["timings"]["total_s"] = round(time.monotonic() - self.started, 3)
        try:
            with atomic_write(self.path) as tmp:
                tmp.write_text(json.dumps(report, indent=1, default=str))
        except OSError as error:
            raise OutputUnwritable(f"cannot write {describe_os_error(error)}") from None
        self._last = time.monotonic()

    def maybe_write(self, report: dict) -> bool:
        """Write if the last write is older than `seconds`; returns whether it wrote."""
        if time.monotonic() - self._last >= self.seconds:
            self.write(report)
            return True
        return False

    def finish(self, report: dict, status: str, exit_code: int) -> None:
        """Write the final report with its status and exit code."""
        report.update(status=status, exit_code=exit_code, finished=now_iso())
        self.write(report)
