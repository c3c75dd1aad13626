"""The worker's side of the job calls: claim, progress, complete, fail (HTTP to the gateway)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

__all__ = ["GatewayUnavailable", "JobCancelled", "JobLost", "JobReporter"]


class JobCancelled(Exception):
    """The requester cancelled the job: stop and write nothing."""


class JobLost(Exception):
    """Another worker holds the job now (this worker's lease ran out): stop and write nothing."""


class GatewayUnavailable(Exception):
    """The gateway could not be reached; the job message is retried later."""


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

    def progress(self, stage: str, fraction: float) -> None:
        state = self._post("progress", {"stage": stage, "fraction": fraction}).get("state")
        if state == "cancelled":
            raise JobCancelled(self.job_id)
        if state != "ok":
            raise JobLost(f"{self.job_id}: {state}")

    def complete(self, resources: list[dict[str, Any]], outputs: list[dict[str, Any]],
                 timings_s: dict[str, float] | None = None) -> str:
        body = {"resources": resources, "outputs": outputs, "timings": timings_s or {},
                **({"note": self.note} if self.note else {})}
        return str(self._post("complete", body)["state"])

    def body_structure(self, tracking_uid: str, label: str) -> str | None:
        """The ``BodyStructure/<id>`` a lesion segment is linked to in the store, or None."""
        ref = self._post("body-structure", {"trackingUid": tracking_uid, "label": label}).get("reference")
        return str(ref) if ref else None

    def fail(self, reason: str) -> str:
        return str(self._post("fail", {"reason": reason})["state"])
