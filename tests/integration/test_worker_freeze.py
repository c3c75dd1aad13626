"""A dosimetry worker's pool process freezes its start-up objects (``gc.freeze``) when it starts,
so the full collections a job triggers do not walk the modules, tables and spectra it inherited.

A real worker (``services.dosimetry.worker.main``, prefork pool, one process) on the real Redis
broker, on a queue of its own, runs a probe task that reports the pool process's freeze count;
a fresh interpreter shows that the ``worker_process_init`` receiver is what freezes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from infra.stack import ROOT, redis_alive
from tests.support.stack import poll

REDIS_URL = "redis://127.0.0.1:6379/0"
#: The module the worker imports besides its own tasks, and its task: sent by name, so that this
#: process registers no task of its own.
PROBE_MODULE = "tests.support.freeze_probe"
PROBE_TASK = f"{PROBE_MODULE}.report_freeze_count"


def _worker_env(queue: str) -> dict[str, str]:
    # no kernel spectra to prepare at start: they play no part here
    return {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": REDIS_URL, "JOB_QUEUE": queue,
            "DOSIMETRY_WARM_GRIDS": "", "LOG_LEVEL": "WARNING"}


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], redis.Redis]]:
    """A real worker on a queue of its own; stopped after the test, and the broker keys its queue
    made (its exchange bindings) deleted, nothing else."""
    assert redis_alive(REDIS_URL), f"Redis does not answer at {REDIS_URL}"
    queue = f"netliver-test-freeze-{uuid.uuid4().hex[:8]}"
    broker = redis.Redis.from_url(REDIS_URL)
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "services.dosimetry.worker.main", "worker", "-Q", queue,
             "--concurrency", "1", "--pool", "prefork", "--loglevel", "WARNING", "-n", f"{queue}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--include", PROBE_MODULE],
            cwd=ROOT, env=_worker_env(queue), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        yield queue, proc, broker
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        broker.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        broker.close()


def test_the_pool_process_of_a_real_worker_runs_jobs_with_its_start_up_objects_frozen(
        worker: tuple[str, subprocess.Popen[bytes], redis.Redis], tmp_path: Path) -> None:
    queue, proc, broker = worker
    key = f"{queue}-report"
    client = Celery("netliver-test-freeze", broker=REDIS_URL)
    try:
        client.send_task(PROBE_TASK, args=[key], queue=queue)
    finally:
        client.close()
    try:
        raw = poll(lambda: broker.get(key) if proc.poll() is None else b"exited",
                   lambda value: value is not None, timeout_s=120)
        assert raw != b"exited", (tmp_path / "worker.log").read_text(errors="replace")
        report: dict[str, Any] = json.loads(raw)
    finally:
        broker.delete(key)
    assert report["pid"] != proc.pid  # the task ran in the pool process, not the worker's main process
    assert report["frozen"] > 0, "the pool process starts with nothing frozen: job collections walk the start-up heap"


def test_the_worker_process_init_receiver_is_what_freezes() -> None:
    """In a fresh interpreter: importing the worker freezes nothing (the main process forks the
    pool), its receiver is connected to ``worker_process_init``, and sending that signal freezes."""
    script = textwrap.dedent("""
        import gc, json, weakref
        import services.dosimetry.worker.main as main
        from celery.signals import worker_process_init
        after_import = gc.get_freeze_count()
        # a receiver is kept as is when connected with weak=False, else as a weak reference
        connected = any((r() if isinstance(r, weakref.ReferenceType) else r) is main._freeze_start_up_objects
                        for _key, r in worker_process_init.receivers)
        worker_process_init.send(sender=None)
        print(json.dumps({"after_import": after_import, "connected": connected,
                          "after_signal": gc.get_freeze_count()}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_worker_env("netliver-test-unused"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after_import"] == 0
    assert report["connected"]
    assert report["after_signal"] > 0
