"""The whole stack as real processes for integration and end-to-end tests.

Each test session gets its own ports, SQLite/PostgreSQL database, Celery queue and data folder,
and uses the machine's Redis (started by ``make services-up`` or here when absent).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from infra.stack import Stack, StackConfig

__all__ = ["make_stack", "poll", "running"]


def make_stack(tmp: Path, *, workers: int = 1, env: dict[str, str] | None = None,
               database_url: str = "", with_orthanc: bool = False) -> Stack:
    queue = f"netliver-test-{uuid.uuid4().hex[:8]}"
    cfg = StackConfig.ephemeral(tmp, workers=workers, database_url=database_url,
                                with_orthanc=with_orthanc, gateway_workers=2, service_workers=1)
    cfg.env.update({"AUTH_MODE": "off", "JOB_QUEUE": queue, "LOG_LEVEL": "INFO",
                    "RATE_LIMIT_PER_MINUTE": "0"})
    cfg.env.update(env or {})
    return Stack(cfg)


@contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    """``stack`` started for the block and stopped after it, also when a test in it fails (a
    start that fails stops what it had started itself)."""
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def poll(fn: Callable[[], Any], until: Callable[[Any], bool], timeout_s: float = 60.0,
         interval_s: float = 0.2) -> Any:
    """Call ``fn`` until ``until(result)`` holds; return the result or raise with the last one."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if until(last):
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not reached in {timeout_s} s; last value: {str(last)[:2000]}")


def get_json(url: str, **kwargs: Any) -> Any:
    resp = requests.get(url, timeout=10, **kwargs)
    return resp.json()
