"""The worker's side of the job calls: claim, progress, complete, fail (HTTP to the gateway)."""

from __future__ import annotations

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
    #: Progress reports on their way (sent in order by one thread; see :meth:`progress`).
    _pending: list[Future[dict[str, Any]]] = field(default_factory=list, init=False, repr=False)
    _sender: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

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
        write each, seven a job), except :data:`SYNCHRONOUS_STAGES`; an answer that the job was
        cancelled or lost is acted on at the next report, and always before the job writes.
        :data:`FINAL_STAGE` is left to the completion."""
        if stage == FINAL_STAGE:
            return
        self._settle(wait=stage in SYNCHRONOUS_STAGES)
        body = {"stage": stage, "fraction": fraction}
        if stage in SYNCHRONOUS_STAGES:
            self._check(self._post("progress", body))
            return
        if self._sender is None:
            self._sender = ThreadPoolExecutor(1, thread_name_prefix=f"progress-{self.job_id}")
        self._pending.append(self._sender.submit(self._post, "progress", body))

    def close(self) -> None:
        """Wait for the reports still on their way (their answers no longer matter) and stop
        the thread that sends them."""
        if self._sender is not None:
            self._sender.shutdown(wait=True)
            self._sender = None
        self._pending.clear()

    def complete(self, resources: list[dict[str, Any]], outputs: list[dict[str, Any]],
                 timings_s: dict[str, float] | None = None) -> str:
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
