"""`python -m adp` is the `adp` command."""

from adp.app.cli import main

main()
