"""Run the `cellpoint` command with one injected fault, for tests/test_faults.py:

    python tests/fault_cli.py FAULT [cellpoint arguments...]

FAULT is one of
- none;
- unwritable:<dir> — every write under <dir> fails with EACCES, as in a folder the user may not write to
  (chmod cannot show that when the tests run as root);
- enospc-from:<suffix> — from the first file whose name ends with <suffix> on, putting any file in place
  fails with ENOSPC, as on a disk that has just filled up;
- kill-after:<suffix> — the process kills itself with SIGKILL right after putting in place a file whose
  name ends with <suffix> (the same moment every run, unlike a timed kill)."""
from __future__ import annotations

import builtins
import errno
import os
import signal
import sys
from pathlib import Path


def _unwritable(folder: str) -> None:
    root = os.path.realpath(folder)

    def inside(path) -> bool:
        try:
            return os.path.realpath(os.fspath(path)).startswith(root)
        except TypeError:  # a file descriptor
            return False

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_open, real_os_open, real_mkdir, real_replace = builtins.open, os.open, os.mkdir, os.replace

    def fake_open(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path) and not os.path.isdir(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_replace(src, dst, *args, **kwargs):
        if inside(dst):
            refuse(dst)
        return real_replace(src, dst, *args, **kwargs)

    builtins.open, os.open, os.mkdir, os.replace = fake_open, fake_os_open, fake_mkdir, fake_replace


def _enospc_from(suffix: str) -> None:
    real_replace = os.replace
    full = [False]

    def fake_replace(src, dst, *args, **kwargs):
        full[0] = full[0] or os.fspath(dst).endswith(suffix)
        if full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(dst))
        return real_replace(src, dst, *args, **kwargs)

    os.replace = fake_replace


def _kill_after(suffix: str) -> None:
    real_replace = os.replace

    def fake_replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if os.fspath(dst).endswith(suffix):
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = fake_replace


def main() -> None:
    fault, args = sys.argv[1], sys.argv[2:]
    kind, _, value = fault.partition(":")
    {"none": lambda _: None, "unwritable": _unwritable, "enospc-from": _enospc_from,
     "kill-after": _kill_after}[kind](value)
    from cellpoint.runtime.cli import main as cellpoint
    sys.argv = ["cellpoint", *args]
    cellpoint()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
