"""What the job benchmarks share: an ephemeral stack with an Orthanc (no Lua trigger, no auth,
no rate limit, its own queue) and waiting for a job's Task to end with one request per poll.
The stack logs at ``BENCH_LOG_LEVEL`` (WARNING; at INFO the worker's log gives each job's stage
timings and the seconds its write-back took, ``write_s``, in the stack's ``logs`` directory)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from netliver import sessions

TOKEN = "bench-internal-token"
#: Task reads while the job fetches its study (its longest stage, when the machine's cores are
#: shared by the PACS sending and the worker reading), then from its dose stage on: each read
#: costs the gateway and its database a few milliseconds of the CPU the job being measured needs,
#: so the end is watched closely only once it is near (seen within 10 ms).
POLL_EARLY_S = 0.2
POLL_S = 0.01
#: Stages after which the end is near.
NEAR_END = frozenset({"dose", "dvh", "store", "done"})
ENDED = {"completed", "failed", "cancelled", "entered-in-error"}


@contextmanager
def job_stack(data_dir: Path, queue: str) -> Iterator[tuple[Any, str]]:
    """The stack (gateway, services, one worker, an Orthanc) and the Orthanc's URL."""
    from infra.stack import StackConfig, running

    cfg = StackConfig.ephemeral(data_dir, with_orthanc=True, orthanc_hook=False, env={
        "AUTH_MODE": "off", "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"), "RATE_LIMIT_PER_MINUTE": "0",
        "INTERNAL_TOKEN": TOKEN, "ORTHANC_CATCHUP_S": "0", "JOB_QUEUE": queue})
    with running(cfg) as stack:
        yield stack, f"http://127.0.0.1:{cfg.orthanc_port}"


def wait_for_task(gateway: str, task_id: str, started: float,
                  on_stage: Callable[[str], None] | None = None) -> tuple[dict[str, Any], float]:
    """The ended Task and the seconds from ``started`` (``time.perf_counter``) to when it was
    seen ended; ``on_stage`` hears the stage the Task names (``businessStatus``) at each poll.
    One kept-alive connection for the polls (:data:`POLL_EARLY_S`, then :data:`POLL_S`)."""
    with sessions.session() as session:
        while True:
            task: dict[str, Any] = session.get(f"{gateway}/fhir/Task/{task_id}", timeout=30).json()
            if task["status"] in ENDED:
                return task, time.perf_counter() - started
            stage = str(task.get("businessStatus", {}).get("text", ""))
            if on_stage is not None:
                on_stage(stage)
            time.sleep(POLL_S if stage in NEAR_END else POLL_EARLY_S)


def job_record(gateway: str, task_id: str) -> dict[str, Any]:
    """The gateway's record of a job (its stage timings, its error)."""
    record: dict[str, Any] = requests.get(f"{gateway}/internal/jobs/{task_id}",
                                          headers={"X-Internal-Token": TOKEN}, timeout=30).json()
    return record
