"""Turn SIGINT / SIGTERM into a stop request that the training loop honours at the next step
boundary (so the checkpoint it then writes is consistent), and re-deliver the signal afterwards."""
from __future__ import annotations

import signal
import threading


class StopRequest:
    """Context manager: while active, the first SIGINT or SIGTERM only sets ``signum``; a second SIGINT
    raises ``KeyboardInterrupt`` at once. Outside the main thread (where handlers cannot be installed)
    it does nothing and signals keep their usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous handlers back."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self.restore()

    def reraise(self) -> None:
        """After the state is saved: restore the handlers and deliver the stop the way it came in
        (``KeyboardInterrupt`` for SIGINT; SIGTERM re-raised to its previous handler, by default ending
        the process)."""
        self.restore()
        if self.signum == signal.SIGTERM:
            signal.raise_signal(signal.SIGTERM)
            raise SystemExit(128 + signal.SIGTERM)  # reached only when SIGTERM was ignored before
        raise KeyboardInterrupt
