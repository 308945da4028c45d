"""What scripts rely on: the exit codes, ``-o table|json|yaml``, and stdout carrying only the
machine output when one is asked for (progress and notes then go to stderr)."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
import yaml

if TYPE_CHECKING:
    from rich.console import Console


class Exit(enum.IntEnum):
    """The exit codes every command shares (docs/reference.md §5)."""

    #: everything asked about is Ready, every check passed, every request was handled
    OK = 0
    #: the cluster answered, and something is not Ready, a check failed or a request was not handled
    NOT_OK = 1
    #: the command line is wrong (click's own code)
    USAGE = 2
    #: no answer to judge: configuration unreadable, API server unreachable or refusing,
    #: trustwire's CRDs not served, or the named object does not exist
    UNAVAILABLE = 3


class Unavailable(click.ClickException):
    """One line to stderr and exit 3: the question could not be asked or has no subject."""

    exit_code = Exit.UNAVAILABLE


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def output_option(func: Callable[..., None]) -> Callable[..., None]:
    return click.option("-o", "--output", "output", type=click.Choice([f.value for f in Format]),
                        default=Format.TABLE.value, show_default=True,
                        help="table for people; json or yaml for scripts (the shape is in docs/reference.md §5).",
                        )(func)


def is_machine(output: str) -> bool:
    return output != Format.TABLE


def emit(output: str, data: Any) -> None:
    """The machine output, alone on stdout."""
    if output == Format.JSON:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def note(output: str, message: str) -> None:
    """A line for the person running the command: stdout for tables, stderr beside machine output."""
    click.echo(message, err=is_machine(output))


def console() -> Console:
    """rich's console for tables: as wide as the terminal, or 200 columns into a pipe."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)
