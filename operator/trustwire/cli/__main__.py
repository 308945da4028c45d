"""``python -m trustwire.cli``: the same commands as the ``trustwire`` script."""

from trustwire.cli import main

main()
