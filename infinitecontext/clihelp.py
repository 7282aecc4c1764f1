"""How `icx … --help` lists subcommands: each with its whole first sentence, wrapped to
the terminal, where click would cut it to one line ending in "..."."""

from __future__ import annotations

# typer builds its commands on the click it vendors (typer._click), not on `click`.
from typer._click import Context, HelpFormatter
from typer.core import TyperGroup

_WHOLE = 10_000
"""A summary limit no first sentence reaches."""


class WholeSummaries(TyperGroup):
    """A command group whose help lists each subcommand's first sentence uncut."""

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=_WHOLE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
