"""The worker's side of the job calls: claim, progress, complete, fail (HTTP to the gateway)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

__all__ = ["GatewayUnavailable", "JobCancelled", "JobLost", "JobReporter"]


class JobCancelled(Exception):
    """The requester cancelled the job: stop and write nothing."""


class JobLost(Exception):
    """Another worker holds the job now (this worker's lease ran out): stop and write nothing."""


class GatewayUnavailable(Exception):
    """The gateway could not be reached; the job message is retried later."""


#: Stages whose report is waited for: the job writes to the PACS from "store" on, so a job
#: cancelled before it writes nothing (every earlier report is sent without waiting).
SYNCHRONOUS_STAGES = frozenset({"store"})

#: The stage a job ends with: not reported on its own, since the completion that follows sets the
#: Task to it (stage "done", 100 %). Its report cost the gateway a Task version and the job a
#: round trip to the gateway before its completion could be sent.
FINAL_STAGE = "done"

#: Least time between two progress reports sent without waiting: a stage that begins sooner is
#: held and sent when the time is up, unless a later one has replaced it by then (or a
#: synchronous stage or the completion supersedes it). Four stages follow the fetch within
#: ~40 ms; each report cost the gateway a Task version (~7 ms of its CPU) while the job needed
#: the cores: the clinical-size job was 35 ms faster without them (median of 12 alternating pairs).
MIN_REPORT_INTERVAL_S = 0.25

#: The gateway names a job's state in a refused call's OperationOutcome ``issue.details``.
JOB_STATE_SYSTEM = "urn:netliver:job-state"


def _refused_state(outcome: dict[str, Any]) -> str | None:
    """The job state an OperationOutcome of a refused job call names, if any."""
    for issue in outcome.get("issue") or []:
        for coding in (issue.get("details") or {}).get("coding") or []:
            if coding.get("system") == JOB_STATE_SYSTEM:
                return str(coding.get("code"))
    return None


@dataclass
class JobReporter:
    gateway_url: str
    token: str
    job_id: str
    worker: str
    session: requests.Session | None = None
    timeout_s: float = 30.0
    #: What the finished Task's statusReason should say (e.g. the RT Dose was not stored).
    note: str = ""
    #: See :data:`MIN_REPORT_INTERVAL_S`.
    min_interval_s: float = MIN_REPORT_INTERVAL_S
    #: Progress reports on their way (sent in order by one thread; see :meth:`progress`).
    _pending: list[Future[dict[str, Any]]] = field(default_factory=list, init=False, repr=False)
    _sender: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    #: When the last report went out (monotonic), the stage held back since, and what wakes its sender.
    _last_sent: float = field(default=float("-inf"), init=False, repr=False)
    _held: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _held_wake: threading.Event | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _post(self, action: str, body: dict[str, Any], ok: tuple[int, ...] = (200,)) -> dict[str, Any]:
        session = self.session or requests.Session()
        try:
            resp = session.post(f"{self.gateway_url}/internal/jobs/{self.job_id}/{action}",
                                json={"worker": self.worker, **body}, timeout=self.timeout_s,
                                headers={"X-Internal-Token": self.token})
        except requests.RequestException as exc:
            raise GatewayUnavailable(f"gateway unreachable during {action}: {type(exc).__name__}") from exc
        if resp.status_code >= 500 or resp.status_code in (401, 403):
            raise GatewayUnavailable(f"gateway answered {resp.status_code} to {action}")
        if resp.status_code not in ok:
            data: dict[str, Any] = resp.json() if resp.content else {}
            return {"state": _refused_state(data) or f"http-{resp.status_code}", **data}
        result: dict[str, Any] = resp.json()
        return result

    def claim(self) -> dict[str, Any]:
        return self._post("claim", {})

    def _check(self, answer: dict[str, Any]) -> None:
        state = answer.get("state")
        if state == "cancelled":
            raise JobCancelled(self.job_id)
        if state != "ok":
            raise JobLost(f"{self.job_id}: {state}")

    def _settle(self, wait: bool) -> None:
        """Take the answers of the reports sent so far (all of them when ``wait``): a job the
        requester cancelled, or another worker's now, stops at the next stage."""
        while self._pending and (wait or self._pending[0].done()):
            self._check(self._pending.pop(0).result())  # raises what the call raised, in order

    def progress(self, stage: str, fraction: float) -> None:
        """Report a stage. Sent without waiting (a report cost the job ~10 ms of the gateway's
        write each), at most one each :attr:`min_interval_s` (a stage that begins sooner is held
        and sent when the time is up, unless a later one has replaced it), except
        :data:`SYNCHRONOUS_STAGES`, sent at once and waited for, which supersede a held stage; an
        answer that the job was cancelled or lost is acted on at the next report, and always
        before the job writes. :data:`FINAL_STAGE` is left to the completion."""
        if stage == FINAL_STAGE:
            return
        body = {"stage": stage, "fraction": fraction}
        if stage in SYNCHRONOUS_STAGES:
            self._drop_held()
            self._settle(wait=True)
            self._check(self._post("progress", body))
            self._last_sent = time.monotonic()
            return
        self._settle(wait=False)
        with self._lock:
            if self._held is None and time.monotonic() - self._last_sent >= self.min_interval_s:
                self._last_sent = time.monotonic()
                self._submit(self._post, "progress", body)
                return
            wake = None if self._held is not None else threading.Event()
            self._held = body
            if wake is not None:
                self._held_wake = wake
                self._submit(self._send_held, self._last_sent + self.min_interval_s, wake)

    def _submit(self, call: Callable[..., dict[str, Any]], *args: Any) -> None:
        if self._sender is None:
            self._sender = ThreadPoolExecutor(1, thread_name_prefix=f"progress-{self.job_id}")
        self._pending.append(self._sender.submit(call, *args))

    def _send_held(self, due: float, wake: threading.Event) -> dict[str, Any]:
        """The held stage, once ``due`` (sooner when ``wake`` is set: it was superseded)."""
        wake.wait(max(0.0, due - time.monotonic()))
        with self._lock:
            body, self._held = self._held, None
            if body is None:
                return {"state": "ok"}  # superseded: nothing to send
            self._last_sent = time.monotonic()
        return self._post("progress", body)

    def _drop_held(self) -> None:
        """Forget the held stage (a later report says more) and wake its sender."""
        with self._lock:
            self._held = None
            if self._held_wake is not None:
                self._held_wake.set()
                self._held_wake = None

    def close(self) -> None:
        """Wait for the reports still on their way (their answers no longer matter; a held stage
        is dropped) and stop the thread that sends them."""
        self._drop_held()
        if self._sender is not None:
            self._sender.shutdown(wait=True)
            self._sender = None
        self._pending.clear()

    def complete(self, resources: list[dict[str, Any]], outputs: list[dict[str, Any]],
                 timings_s: dict[str, float] | None = None) -> str:
        self._drop_held()  # the completion sets the Task's last stage
        self._settle(wait=True)
        body = {"resources": resources, "outputs": outputs, "timings": timings_s or {},
                **({"note": self.note} if self.note else {})}
        return str(self._post("complete", body)["state"])

    def body_structure(self, tracking_uid: str, label: str) -> str | None:
        """The ``BodyStructure/<id>`` a lesion segment is linked to in the store, or None. A read,
        which may run in another thread beside the progress reports (a job looks its lesions up
        while its CT still arrives): it neither waits for nor takes their answers."""
        ref = self._post("body-structure", {"trackingUid": tracking_uid, "label": label}).get("reference")
        return str(ref) if ref else None

    def fail(self, reason: str) -> str:
        self.close()  # a report still on its way must not reach the gateway after the failure
        return str(self._post("fail", {"reason": reason})["state"])
