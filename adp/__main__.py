"""`python -m adp` is the `adp` command."""

from adp.cli import main

main()
