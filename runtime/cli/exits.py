"""Exit codes of `cellpoint segment` (documented in the README) and the exceptions that end a run with them.

0 every input done; 1 some inputs failed (the others are done); 2 usage error (a bad option, found before
any work); 3 the model package is unusable; 4 the output cannot be written (the run stops at once, what was
finished is kept)."""
from __future__ import annotations

import click

DONE, INPUTS_FAILED, USAGE, PACKAGE_UNUSABLE, OUTPUT_UNWRITABLE = 0, 1, 2, 3, 4


class PackageUnusable(click.ClickException):
    """The model package cannot be loaded or run; one line naming it and the reason."""
    exit_code = PACKAGE_UNUSABLE


class OutputUnwritable(click.ClickException):
    """An output file or the output folder cannot be written; one line naming it and the reason."""
    exit_code = OUTPUT_UNWRITABLE


def describe_os_error(error: OSError) -> str:
    """'<file>: <reason>' of an OSError, e.g. 'out/a_labels.tif: No space left on device'."""
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename else reason
