"""`python -m examsync_server` is the `examsync` command."""

from .cli import main

main()
