"""Agent cancellation: SIGINT, then SIGTERM 7.5 s later, then a kill 2.5 s after that.

Inside :func:`cancel_on_signals` the first SIGINT or SIGTERM raises :class:`Cancelled` in the
main thread (interrupting a sleep or a poll); later signals are only noted, so the clean-up
(stopping the SageMaker execution) is not itself interrupted.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from bridge.errors import Cancelled


@contextmanager
def cancel_on_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Cancelled(f"cancelled by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
