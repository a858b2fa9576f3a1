"""The ``maskwatch`` command's first lines: SIGTERM ends it with 0 before the CLI's imports, which take a while."""

import signal
import sys


def main() -> None:
    """Until a command takes SIGTERM over, nothing has started: stopping is exiting, with 0."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from maskwatch.cli import main as cli_main

    cli_main()
