"""``trustwire`` / ``kubectl trustwire``: run the operator, run the demo, inspect, rotate, check.

Errors reach the user as one clear line and a non-zero exit (:class:`~trustwire.cli.output.Exit`),
never a traceback.
"""

from __future__ import annotations

import click

from trustwire import __version__
from trustwire.cli.check import check
from trustwire.cli.enroll import enroll
from trustwire.cli.external import confirm, export
from trustwire.cli.operate import demo, run
from trustwire.cli.rotation import rotate
from trustwire.cli.serve import serve
from trustwire.cli.status_table import status
from trustwire.cli.token import token
from trustwire.cli.verification import verify

__all__ = ["check", "confirm", "demo", "enroll", "export", "main", "rotate", "run", "serve", "status", "token",
           "verify"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trustwire")
def main() -> None:
    """trustwire wires mutual authentication (mTLS, JWT, shared secrets) between services."""


for _command in (run, demo, status, rotate, verify, check, export, confirm, serve, token, enroll):
    main.add_command(_command)
