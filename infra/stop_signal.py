"""A stop request by SIGTERM or SIGINT (Ctrl-C) for a process that runs in the foreground.

The handler only records the request; the foreground loop polls :attr:`StopRequest.requested`
and stops what it started in its own ``finally``, so a signal never interrupts a cleanup half
way."""

from __future__ import annotations

import signal

__all__ = ["StopRequest", "stop_on_signals"]


class StopRequest:
    """Whether SIGTERM or SIGINT arrived since :func:`stop_on_signals`."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True


def stop_on_signals() -> StopRequest:
    """Install SIGTERM and SIGINT handlers that set the returned request (main thread only)."""
    request = StopRequest()
    signal.signal(signal.SIGTERM, request._handle)
    signal.signal(signal.SIGINT, request._handle)
    return request
