"""``python -m maskwatch``: SIGTERM ends the process with 0 from its first line (see :func:`maskwatch.cli.main`)."""

import signal
import sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # until a command takes it over: nothing has started yet

from maskwatch.cli import main  # noqa: E402 (after the handler: this import alone takes a while)

main()
