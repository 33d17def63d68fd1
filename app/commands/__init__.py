"""One module per `adp` command: options, progress bars, tables and exit codes around the
library call that does the work. app/cli.py lists them by name and imports one only when it
runs, so `adp --help` stays fast."""
