"""``python -m maskwatch``: the same entry as the ``maskwatch`` command (see :mod:`maskwatch.launch`)."""

from maskwatch.launch import main

main()
