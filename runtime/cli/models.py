"""`cellpoint models`: the bundled model packages."""
from __future__ import annotations

import click


@click.command("models")
def models():
    """List the bundled model packages."""
    from cellpoint.runtime.package import DEFAULT_MODEL, list_models
    for m in list_models():
        mark = " (default)" if m["name"] == DEFAULT_MODEL else ""
        click.echo(f"{m['name']}{mark}: {m['description']}")
