"""The asynchronous job pattern (FHIR R4 "Asynchronous Request Patterns") and the internal job
calls of the workers.

``POST /fhir/$voxel-dosimetry`` → job row + ``Task`` (requested) committed → Celery message →
``202 Accepted`` with ``Content-Location: <base>/fhir/_async/<id>`` (the status URL) and
``Location: <base>/fhir/Task/<id>`` (the Task, which stays readable and searchable).

Polling the status URL (FHIR R4 §3.1.0.13 / ``async.html``): ``202`` with ``X-Progress`` and
``Retry-After`` while the job is requested or in progress; ``200`` with a ``batch-response``
Bundle holding the Task and its outputs once completed; the failure's status (``503`` when a
dependency was down, else ``422``) with an OperationOutcome once failed; ``404`` once cancelled.
``DELETE`` on the status URL or on ``/fhir/Task/<id>`` cancels. Workers call
``/internal/jobs/<id>/{claim,progress,complete,fail}`` with the internal token,
and ``/internal/jobs/<id>/body-structure`` to link a lesion segment to its BodyStructure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, request

from gateway.auth import require_internal_token, require_scopes
from gateway.dose_records import find_lesion_body_structure
from gateway.jobs.dispatch import JobQueue
from gateway.jobs.records import TERMINAL, Job, JobStore, task_resource
from gateway.store.base import FhirStore
from gateway.store.sql import SqlStore
from gateway.writeback import tag_results, transaction_bundle
from netliver.dosimetry_contract import parse_voxel_parameters
from netliver.fhir.builders import canonical_json, deterministic_id
from netliver.fhir.outcome import FhirError
from netliver.web import fhir_response, read_json_body

__all__ = ["JOB_RESULT_TYPES", "JOB_STATE_SYSTEM", "JobService", "create_jobs_blueprint", "job_status"]

_log = logging.getLogger("netliver.gateway.jobs")

#: The resource types a job's completion may write (besides its Task).
JOB_RESULT_TYPES = ("DiagnosticReport", "Observation", "Provenance")

#: ``issue.details.coding.system`` of the job state in a refused internal job call (409).
JOB_STATE_SYSTEM = "urn:netliver:job-state"


@dataclass
class JobService:
    """Job lifecycle: create, claim, progress, complete, fail, cancel, with Task write-back."""

    jobs: JobStore
    store: FhirStore
    dispatcher: JobQueue
    base_url_of: Callable[[], str]
    lease_s: int

    def _same_db(self) -> SqlStore | None:
        """The store, when it is the SQL database of the job rows (so one transaction holds both)."""
        return self.store if isinstance(self.store, SqlStore) and self.store.engine is self.jobs.engine else None

    def _write(self, conn: sa.Connection, resources: list[dict[str, Any]]) -> None:
        """Write ``resources`` while the job row's transaction ``conn`` is open: in it when the
        store shares the jobs' database, else (upstream store) before it commits, so the row
        commits only if the store took the resources. Either way the row stays locked until the
        Task is written, so a concurrent cancel or completion cannot be overwritten by an older
        Task status."""
        bundle = transaction_bundle(resources)
        sql = self._same_db()
        if sql is not None:
            sql.transaction(bundle, self.base_url_of(), conn=conn)
        else:
            self.store.transaction(bundle, self.base_url_of())

    def _task(self, job: Job) -> dict[str, Any]:
        return task_resource(job, self.base_url_of())

    def submit(self, kind: str, params: dict[str, Any],
               identity: dict[str, Any] | None = None) -> tuple[Job, bool]:
        """Create (or find) the job for these parameters; returns (job, newly sent).

        The job id is determined by ``identity`` (default: all of ``params``): the parameters
        that make two requests the same job."""
        job_id = deterministic_id("job", kind, canonical_json(params if identity is None else identity))
        existing = self.jobs.get(job_id)
        if existing is not None and existing.state not in {"failed", "cancelled"}:
            return existing, False
        job = Job(id=job_id, kind=kind, params=params, patient=str(params.get("patient", "")))
        try:
            with self.jobs.engine.begin() as conn:
                if existing is None:
                    self.jobs.insert(job, conn)
                else:
                    self.jobs.reset(job, conn)
                    job.attempts = existing.attempts
                self._write(conn, [self._task(job)])
        except sa.exc.IntegrityError:
            # Another gateway process inserted the same job between our read and our insert.
            created = self.jobs.get(job_id)
            if created is None:
                raise
            return created, False
        try:
            self.dispatcher.send(job_id)
        except Exception as exc:
            _log.error("broker unavailable", extra={"job": job_id, "error": str(exc)})
            self.fail(job_id, "", "the job queue (Redis broker) is unavailable; nothing was run", force=True)
            raise FhirError(503, "transient", "the job queue is unavailable; try again later",
                            headers={"Retry-After": "10"}) from exc
        return job, True

    def claim(self, job_id: str, worker: str) -> dict[str, Any]:
        with self.jobs.engine.begin() as conn:
            claim = self.jobs.claim(conn, job_id, worker, self.lease_s)
            if claim.granted and claim.job is not None:
                self._write(conn, [self._task(claim.job)])
        return {"granted": claim.granted, "reason": claim.reason,
                "job": claim.job.public() if claim.job else None, "leaseSeconds": self.lease_s}

    def progress(self, job_id: str, worker: str, stage: str, fraction: float) -> dict[str, Any]:
        with self.jobs.engine.begin() as conn:
            state, job = self.jobs.progress(conn, job_id, worker, stage, fraction, self.lease_s)
            if state == "ok" and job is not None:
                self._write(conn, [self._task(job)])
        return {"state": state}

    def complete(self, job_id: str, worker: str, resources: list[dict[str, Any]],
                 outputs: list[dict[str, Any]], timings_s: dict[str, float] | None = None,
                 note: str = "") -> dict[str, Any]:
        types = [r.get("resourceType") if isinstance(r, dict) else None for r in resources]
        foreign = sorted({str(t) for t in types if t not in JOB_RESULT_TYPES})
        if foreign:
            reason = (f"the job's results may only be {', '.join(JOB_RESULT_TYPES)}; "
                      f"refused: {', '.join(foreign)}")
            _log.error("job results of a foreign type", extra={"job": job_id, "types": foreign})
            self.fail(job_id, worker, reason)
            return {"state": "failed", "reason": reason}
        # Loaded at start in the background (gateway.webapp.warm_up_plotting).
        from netliver.report.presented import with_presented_forms

        resources = tag_results(with_presented_forms(resources))
        try:
            with self.jobs.engine.begin() as conn:
                state, job = self.jobs.finish(conn, job_id, worker, "completed", note, outputs=outputs,
                                              timings_s=timings_s)
                if state == "ok" and job is not None:
                    self._write(conn, [*resources, self._task(job)])
        except FhirError as err:
            if err.status >= 500:
                raise  # the store is down: the worker retries the completion
            if err.status == 409:  # a concurrent write won: retrying the completion is right
                raise FhirError(503, "transient", f"the FHIR store was busy: {err.diagnostics}",
                                headers={"Retry-After": "1"}) from err
            # The store refuses these results and would refuse them again: fail the job with
            # the reason instead of leaving it in progress for the sweep to run again forever.
            reason = f"the FHIR store refused the results: {err.diagnostics}"
            _log.error("job results refused by the store", extra={"job": job_id, "error": err.diagnostics})
            self.fail(job_id, worker, reason[:2000])
            return {"state": "failed", "reason": reason}
        return {"state": state}

    def fail(self, job_id: str, worker: str, reason: str, force: bool = False) -> dict[str, Any]:
        with self.jobs.engine.begin() as conn:
            state, job = self.jobs.finish(conn, job_id, "" if force else worker, "failed", reason)
            if state == "ok" and job is not None:
                self._write(conn, [self._task(job)])
        return {"state": state}

    def cancel(self, job_id: str) -> Job | None:
        with self.jobs.engine.begin() as conn:
            state, job = self.jobs.finish(conn, job_id, "", "cancelled", "cancelled by the requester")
            if state == "ok" and job is not None:
                self._write(conn, [self._task(job)])
        if job is None:
            return None
        # No Celery revoke: messages carry random task ids (a job may have several: retries,
        # re-sends), and reusing the job id would make a later resubmission of it revoked too.
        # The worker learns of the cancel at its claim or next progress report.
        if state == "done":
            raise FhirError(409, "conflict", f"the job is already {job.state}; it cannot be cancelled",
                            "Task.status")
        return job


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise FhirError(400, "invalid", "a JSON object was expected")
    return body


def _worker(body: dict[str, Any]) -> str:
    """The calling worker's name: required, because an empty name means the requester's cancel
    to :meth:`JobStore.finish` and would skip the lease check."""
    worker = body.get("worker")
    if not isinstance(worker, str) or not worker.strip():
        raise FhirError(400, "required", "the worker's name is required", "worker")
    return worker


def _fraction(body: dict[str, Any]) -> float:
    value = body.get("fraction", 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FhirError(400, "invalid", "fraction must be a number between 0 and 1", "fraction")
    return float(value)


def _completion_note(body: dict[str, Any]) -> str:
    """The worker's note on a completion (the Task's statusReason), e.g. the RT Dose not stored."""
    note = body.get("note", "")
    if not isinstance(note, str):
        raise FhirError(400, "invalid", "note must be a string", "note")
    return note[:1000]


def _completion(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """(resources, outputs, timings) of a completion call; 400 naming the malformed element."""
    resources = body.get("resources") or []
    if not isinstance(resources, list):
        raise FhirError(400, "invalid", "resources must be a list", "resources")
    outputs = body.get("outputs") or []
    if not isinstance(outputs, list):
        raise FhirError(400, "invalid", "outputs must be a list", "outputs")
    for i, out in enumerate(outputs):
        if not isinstance(out, dict):
            raise FhirError(400, "invalid", "each output must be an object", f"outputs[{i}]")
        if not isinstance(out.get("reference"), str):
            raise FhirError(400, "required", "each output needs a reference", f"outputs[{i}].reference")
    timings = body.get("timings") or {}
    if not isinstance(timings, dict):
        raise FhirError(400, "invalid", "timings must be an object of stage → seconds", "timings")
    for stage, seconds in timings.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise FhirError(400, "invalid", "a stage's time must be a number of seconds", f"timings.{stage}")
    return resources, outputs, {str(k): float(v) for k, v in timings.items()}


#: Words of a failure reason that mean a dependency was down rather than the input unusable.
_UNAVAILABLE_MARKS = ("unavailable", "unreachable", "timed out", "ConnectionError", "ConnectTimeout")
_RETRY_AFTER_S = "2"


def _failure_status(reason: str) -> int:
    """The HTTP status a failed job reports on its status URL: 503 when a dependency (PACS,
    queue, store) was down, so a retry may succeed; else 422 (the input cannot be used)."""
    return 503 if any(mark.lower() in reason.lower() for mark in _UNAVAILABLE_MARKS) else 422


def _output_entry(store: Any, reference: str) -> dict[str, Any]:
    rtype, _, rid = reference.partition("/")
    try:
        resource = store.read(rtype, rid)
    except FhirError as err:
        return {"response": {"status": str(err.status), "outcome": err.to_fhir()}}
    return {"fullUrl": reference, "resource": resource, "response": {"status": "200 OK"}}


def job_status(service: JobService, job_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of the job's status URL (see the module docstring)."""
    job = service.jobs.get(job_id)
    if job is None:
        raise FhirError(404, "not-found", f"no asynchronous job {job_id}")
    if job.state == "cancelled":
        raise FhirError(404, "not-found", f"the job {job_id} was cancelled")
    task = task_resource(job, service.base_url_of())
    if job.state == "failed":
        status = _failure_status(job.status_reason)
        headers = {"Retry-After": "10"} if status == 503 else {}
        return status, FhirError(status, "transient" if status == 503 else "processing",
                                 job.status_reason or "the job failed", "Task.statusReason").to_fhir(), headers
    if job.state != "completed":
        progress = f"{job.stage or job.state} {round(job.progress * 100)}%"
        outcome = {"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": f"the job is {job.state}: {progress}"}]}
        return 202, outcome, {"X-Progress": progress, "Retry-After": _RETRY_AFTER_S}
    entries = [{"fullUrl": f"{service.base_url_of()}/Task/{job.id}", "resource": task,
                "response": {"status": "200 OK"}}]
    entries += [_output_entry(service.store, str(o["reference"])) for o in job.outputs]
    return 200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries}, {}


def create_jobs_blueprint(service: JobService) -> Blueprint:
    """The ``jobs`` blueprint: the FHIR-facing asynchronous endpoints and the workers' internal
    job calls (see the module docstring)."""
    bp = Blueprint("jobs", __name__)
    _add_fhir_routes(bp, service)
    _add_worker_routes(bp, service)
    return bp


def _add_fhir_routes(bp: Blueprint, service: JobService) -> None:
    """``$voxel-dosimetry`` (starts a job), the status URL (poll, cancel) and Task cancel."""

    @bp.post("/fhir/$voxel-dosimetry")
    def voxel_dosimetry() -> Response:
        require_scopes(read=("ImagingStudy",), write=("Task", *JOB_RESULT_TYPES))
        params = parse_voxel_parameters(read_json_body())
        job, _ = service.submit("voxel-dosimetry", params)
        base = service.base_url_of()
        return fhir_response(task_resource(job, base), 202,
                             {"Content-Location": f"{base}/_async/{job.id}", "Location": f"{base}/Task/{job.id}"})

    @bp.get("/fhir/_async/<job_id>")
    def status(job_id: str) -> Response:
        require_scopes(read=("Task", *JOB_RESULT_TYPES))
        code, body, headers = job_status(service, job_id)
        return fhir_response(body, code, headers)

    @bp.delete("/fhir/_async/<job_id>")
    def cancel_by_status_url(job_id: str) -> Response:
        require_scopes(write=("Task",))
        job = service.cancel(job_id)
        if job is None:
            raise FhirError(404, "not-found", f"no asynchronous job {job_id}")
        return fhir_response(task_resource(job, service.base_url_of()), 202)

    @bp.delete("/fhir/Task/<task_id>")
    def cancel_task(task_id: str) -> Response:
        require_scopes(write=("Task",))
        if service.jobs.get(task_id) is None:
            service.store.delete("Task", task_id)
            return Response(status=204)
        job = service.cancel(task_id)
        assert job is not None
        return fhir_response(task_resource(job, service.base_url_of()), 202)


def _add_worker_routes(bp: Blueprint, service: JobService) -> None:
    """``/internal/jobs/<id>/…``: the workers' calls, with the internal token."""

    @bp.post("/internal/jobs/<job_id>/claim")
    def claim(job_id: str) -> Response:
        require_internal_token()
        body = _json_object()
        return fhir_response(service.claim(job_id, _worker(body)))

    @bp.post("/internal/jobs/<job_id>/progress")
    def progress(job_id: str) -> Response:
        require_internal_token()
        body = _json_object()
        return fhir_response(service.progress(job_id, _worker(body), str(body.get("stage", "")),
                                                    _fraction(body)))

    @bp.post("/internal/jobs/<job_id>/complete")
    def complete(job_id: str) -> Response:
        require_internal_token()
        body = _json_object()
        worker = _worker(body)
        try:
            resources, outputs, timings = _completion(body)
        except FhirError as err:
            # The same worker would send the same thing again: fail the job, do not retry it.
            service.fail(job_id, worker, f"the worker sent a malformed completion: {err.diagnostics}")
            raise
        result = service.complete(job_id, worker, resources, outputs, timings, _completion_note(body))
        if result["state"] != "ok":
            raise FhirError(409, "conflict", f"the job cannot be completed by this worker: it is {result['state']}"
                            + (f" ({result['reason']})" if result.get("reason") else ""),
                            details=(JOB_STATE_SYSTEM, str(result["state"])))
        return fhir_response(result)

    @bp.post("/internal/jobs/<job_id>/body-structure")
    def body_structure(job_id: str) -> Response:
        """The BodyStructure a lesion segment of this job's study is (``trackingUid``, ``label``)."""
        require_internal_token()
        body = _json_object()
        if service.jobs.get(job_id) is None:
            raise FhirError(404, "not-found", f"no job {job_id}")
        return fhir_response(find_lesion_body_structure(service.store, str(body.get("trackingUid") or ""),
                                                        str(body.get("label") or ""), service.base_url_of()))

    @bp.post("/internal/jobs/<job_id>/fail")
    def fail(job_id: str) -> Response:
        require_internal_token()
        body = _json_object()
        return fhir_response(service.fail(job_id, _worker(body), str(body.get("reason", ""))))

    @bp.get("/internal/jobs/<job_id>")
    def get_job(job_id: str) -> Response:
        require_internal_token()
        job = service.jobs.get(job_id)
        if job is None:
            raise FhirError(404, "not-found", f"no job {job_id}")
        return fhir_response({**job.public(), "completions": job.completions,
                              "leaseOwner": job.lease_owner, "statusReason": job.status_reason,
                              "timings": job.timings_s, "created": job.created.isoformat(),
                              "updated": job.updated.isoformat()})


__all__ += ["TERMINAL"]
