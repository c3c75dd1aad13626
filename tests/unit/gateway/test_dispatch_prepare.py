"""A gateway process opens its way to the job broker as it starts, so its first kickoff does not
(the result backend's class, the producer's connection and channel); nothing is written to the
broker, and a broker that does not answer holds nothing up."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.deps import build_deps
from gateway.jobs.dispatch import Dispatcher
from gateway.store.sql import SqlStore
from infra.stack import free_port
from netliver.settings import Settings

#: Run in a fresh interpreter: kombu keeps one producer pool per broker address in a process, which
#: another test's dispatcher may have connected already.
_PROBE = """
from gateway.jobs.dispatch import Dispatcher
from netliver.settings import Settings


def connected(dispatcher):
    with dispatcher.celery.producer_or_acquire() as producer:
        return bool(producer.connection.connected)


fresh = Dispatcher(Settings.from_env())
print(connected(fresh))  # kombu opens it lazily, at the first send
prepared = Dispatcher(Settings.from_env())
print(prepared.prepare(), connected(prepared))
"""


def test_a_prepared_dispatcher_has_its_broker_connection_open() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True"]


def test_a_broker_that_does_not_answer_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = Dispatcher(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", job_queue="netliver-nowhere"))
    with caplog.at_level(logging.INFO, logger="netliver.gateway.jobs"):
        assert dispatcher.prepare() is False
    assert any("job queue not prepared" in r.getMessage() and getattr(r, "queue", "") == "netliver-nowhere"
               for r in caplog.records)


class _Queue:
    def __init__(self) -> None:
        self.prepared = threading.Event()
        self.thread = ""

    def send(self, job_id: str) -> None:
        raise AssertionError("no job is sent")

    def ping(self) -> dict[str, Any]:
        return {"status": "pass"}

    def prepare(self) -> bool:
        self.thread = threading.current_thread().name
        self.prepared.set()
        return True


def test_the_gateway_prepares_its_job_queue_beside_its_start(tmp_path: Path) -> None:
    settings = Settings.from_env({"AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
                                  "ORTHANC_CATCHUP_S": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING"})
    queue = _Queue()
    app = create_app(settings, deps=build_deps(settings, store=SqlStore(settings.database_url), dispatcher=queue))
    try:
        assert queue.prepared.wait(5.0)
        assert queue.thread != threading.main_thread().name  # not in the start's own thread
    finally:
        app.extensions["netliver"]["store"].close()
