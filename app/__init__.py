"""The application floor: the `adp` command line (`cli.py`, every command's click front end in
`commands/`), the demo, the demo web site and the web console. Nothing below this floor imports
click or prints for a command: library code raises the errors of adp.core.errors, and
`cli.py` maps them to one line and an exit code."""
