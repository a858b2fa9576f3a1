"""What every child process of ``maskwatch serve`` does alike: when to stop (SIGTERM, SIGINT, or its parent gone)."""

from __future__ import annotations

import os
import signal


class Lifetime:
    """SIGTERM/SIGINT handlers for a child's main loop; :attr:`running` turns False on either.

    It also turns False once the service is gone: a service killed with -9 runs
    no handlers, its children are re-parented, and an orphan must not keep a
    camera or the GPU busy.
    """

    def __init__(self) -> None:
        self.stopping = False
        self._parent = os.getppid()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, *_: object) -> None:
        self.stopping = True

    @property
    def running(self) -> bool:
        return not self.stopping and os.getppid() == self._parent
