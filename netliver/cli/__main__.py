"""``python -m netliver.cli`` (the same as the installed ``netliver`` command)."""

from netliver.cli.main import cli

cli(prog_name="netliver")
