"""A task for a real dosimetry worker under test (``celery -A services.dosimetry.worker.main
worker --include tests.support.freeze_probe``): it reports, from inside the pool process that runs
it, how many objects the cyclic garbage collector has frozen, by writing it to a Redis key the
test names (the worker's app keeps no results)."""

from __future__ import annotations

import gc
import json
import os

import redis
from celery import shared_task

__all__ = ["report_freeze_count"]


@shared_task  # named for where it lives: tests.support.freeze_probe.report_freeze_count
def report_freeze_count(key: str) -> None:
    """Write ``{"frozen": gc.get_freeze_count(), "pid": ...}`` of this process to ``key``."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.set(key, json.dumps({"frozen": gc.get_freeze_count(), "pid": os.getpid()}), ex=600)
