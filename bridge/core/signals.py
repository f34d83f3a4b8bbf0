"""Agent cancellation: SIGINT, then SIGTERM 7.5 s later, then a kill 2.5 s after that.

Inside :func:`cancel_on_signals` the first SIGINT or SIGTERM raises :class:`CancelRequested` in
the main thread (interrupting a sleep, a poll or an AWS call in flight); later signals are only
noted, so the clean-up (finding and stopping the SageMaker execution) is not itself interrupted.
A clean-up that starts for another reason (a ``KeyboardInterrupt`` raised elsewhere) calls
:meth:`CancelScope.shield` to get the same protection. The caller turns the interruption into
:class:`~bridge.errors.Cancelled` (exit 130) once it has cleaned up.

Why not raise ``Cancelled`` from the handler: it is an ``Exception``, and botocore's
``URLLib3Session.send`` wraps any ``Exception`` raised while a request is sent or its answer read
into ``HTTPClientError``, which the retry handler retries: a cancel arriving during an AWS call
was swallowed, the request sent again and the command went on (and, the first signal being
spent, ignored the agent's SIGTERM until the kill). ``CancelRequested`` derives from
``KeyboardInterrupt``, as Python's own SIGINT does, which botocore and urllib3 let through
(urllib3 then closes the connection it was using).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class CancelRequested(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived inside :func:`cancel_on_signals`; ``str()`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"cancelled by {signal.Signals(signum).name}")
        self.signum = signum


class CancelScope:
    """The signals received inside :func:`cancel_on_signals`, and whether they may interrupt."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.shielded = False

    def shield(self) -> None:
        """From now on signals are only noted: the clean-up must run to its end."""
        self.shielded = True

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if not self.shielded:
            self.shielded = True
            raise CancelRequested(signum)


@contextmanager
def cancel_on_signals() -> Iterator[CancelScope]:
    scope = CancelScope()
    if threading.current_thread() is not threading.main_thread():
        yield scope  # signal handlers can only be installed from the main thread
        return
    previous = {sig: signal.signal(sig, scope._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield scope
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
