"""The `cellpoint` command: `segment`, `models` and `serve` live here; other subcommands (labels, train, evaluate,
export) are found through the `cellpoint.commands` entry points, so the runtime never imports them."""
from __future__ import annotations

from importlib.metadata import entry_points

import click


class _PluginGroup(click.Group):
    """A click group that adds subcommands registered under the `cellpoint.commands` entry point group,
    loading each only when it is listed or invoked (so `cellpoint segment` never imports torch)."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group="cellpoint.commands")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        plugin = self._plugins().get(name)
        if plugin is None:
            return None
        try:
            return plugin.load()
        except ImportError as error:  # the extra that provides it is not installed
            missing = error.name or str(error)

            @click.command(name, help=f"(unavailable: needs `pip install cellpoint[train]`; missing {missing})")
            def unavailable():
                raise click.ClickException(
                    f"`cellpoint {name}` needs the training extra: pip install 'cellpoint[train]' "
                    f"(missing module: {missing})")
            return unavailable


@click.group(cls=_PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cellpoint")
def main():
    """cellpoint: cell instance segmentation trained from cheap annotations."""


from cellpoint.runtime.cli.models import models  # noqa: E402
from cellpoint.runtime.cli.segment import segment  # noqa: E402
from cellpoint.runtime.cli.serve import serve  # noqa: E402

main.add_command(segment)
main.add_command(models)
main.add_command(serve)
