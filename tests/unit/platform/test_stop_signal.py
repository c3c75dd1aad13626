"""The foreground commands (``python -m infra.stack serve``, ``python -m infra.orthanc_process``)
stop on SIGTERM and on SIGINT alike: the signal is recorded, not acted on in the handler."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from infra.stop_signal import stop_on_signals

pytestmark = pytest.mark.unit


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_either_signal_requests_the_stop_and_raises_nothing(restored_handlers: None, sig: int) -> None:
    stop = stop_on_signals()
    assert not stop.requested
    os.kill(os.getpid(), sig)  # delivered to the main thread before the next bytecode
    assert stop.requested


def test_a_request_is_not_shared_between_two_installs(restored_handlers: None) -> None:
    first = stop_on_signals()
    second = stop_on_signals()
    os.kill(os.getpid(), signal.SIGTERM)
    assert second.requested and not first.requested
