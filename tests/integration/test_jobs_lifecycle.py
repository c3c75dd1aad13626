"""The job pattern at the gateway, with a real Redis broker and a real SQL store.

The test plays the worker through the internal job calls, so every lease rule can be driven
deterministically: one claim at a time, a dead worker's job re-claimed after its lease, one
completion only, cancellation seen at the next progress report, nothing written by a loser.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.report.presented import with_presented_forms
from netliver.settings import Settings

TOKEN = "test-internal-token"
INTERNAL = {"X-Internal-Token": TOKEN}
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every job rule on both embedded databases: SQLite (one writer) and PostgreSQL (row locks)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from tests.support import postgres

    postgres.ensure_running()
    name = postgres.create_database()
    try:
        yield postgres.database_url(name)
    finally:
        postgres.drop_database(name)


@pytest.fixture
def client(database_url: str) -> Iterator[FlaskClient]:
    settings = Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": database_url,
        "INTERNAL_TOKEN": TOKEN, "JOB_LEASE_S": "1", "JOB_QUEUE": f"netliver-test-{uuid.uuid4().hex[:8]}",
        "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "WARNING",
        "JOB_SWEEP_S": "0",
    })
    app = create_app(settings)
    yield app.test_client()
    app.extensions["netliver"]["store"].close()  # let the test database be dropped


def _params(activity: float = 3.0, study: str = STUDY_UID) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "studyInstanceUid", "valueString": study},
        {"name": "administeredActivityGBq", "valueDecimal": activity},
        {"name": "method", "valueCode": "ldm"},
    ]}


def _submit(client: FlaskClient, **kw: Any) -> tuple[str, Any]:
    resp = client.post("/fhir/$voxel-dosimetry", json=_params(**kw), headers={"Prefer": "respond-async"})
    assert resp.status_code == 202, resp.get_json()
    status_url = resp.headers["Content-Location"]
    assert "/fhir/_async/" in status_url
    task_url = resp.headers["Location"]
    assert "/fhir/Task/" in task_url and task_url.rsplit("/", 1)[1] == status_url.rsplit("/", 1)[1]
    return task_url.rsplit("/", 1)[1], resp


def _internal(client: FlaskClient, job: str, action: str, **body: Any) -> Any:
    return client.post(f"/internal/jobs/{job}/{action}", json=body, headers=INTERNAL)


def _result(job: str, n: int) -> list[dict[str, Any]]:
    return [{"resourceType": "Observation", "id": f"{job[:8]}-voi-{i}", "status": "final",
             "code": {"text": f"VOI {i} dose"}, "valueQuantity": {"value": 10.0 * i, "unit": "Gy"}}
            for i in range(n)]


def test_submit_stores_a_requested_task_before_answering(client: FlaskClient) -> None:
    job, resp = _submit(client)
    task = client.get(f"/fhir/Task/{job}").get_json()
    assert task["resourceType"] == "Task" and task["status"] == "requested"
    assert resp.get_json()["id"] == job


def test_the_same_request_twice_is_one_job(client: FlaskClient) -> None:
    first, _ = _submit(client)
    second, _ = _submit(client)
    other, _ = _submit(client, activity=2.5)
    assert first == second != other


def test_one_claim_at_a_time_and_reclaim_after_the_lease_runs_out(client: FlaskClient) -> None:
    job, _ = _submit(client)
    a = _internal(client, job, "claim", worker="A").get_json()
    assert a["granted"] is True and a["job"]["params"]["studyInstanceUid"] == STUDY_UID
    b = _internal(client, job, "claim", worker="B").get_json()
    assert b["granted"] is False and "leased" in b["reason"]
    assert client.get(f"/fhir/Task/{job}").get_json()["status"] == "in-progress"
    time.sleep(1.2)  # A "died": its 1 s lease runs out
    b = _internal(client, job, "claim", worker="B").get_json()
    assert b["granted"] is True and b["job"]["attempts"] == 2
    # A wakes up: its progress and completion are refused, nothing of A is written.
    assert _internal(client, job, "progress", worker="A", stage="dose", fraction=0.5).get_json()["state"] == "lost"
    resp = _internal(client, job, "complete", worker="A", resources=_result(job, 2),
                     outputs=[{"reference": f"Observation/{job[:8]}-voi-0"}])
    assert resp.status_code == 409
    assert client.get(f"/fhir/Observation/{job[:8]}-voi-0").status_code == 404


def _refused_state(outcome: dict[str, Any]) -> str:
    """The job state a refused internal call names (an OperationOutcome, never ``{"state": …}``)."""
    assert outcome["resourceType"] == "OperationOutcome", outcome
    codings = outcome["issue"][0]["details"]["coding"]
    assert codings[0]["system"] == "urn:netliver:job-state"
    return str(codings[0]["code"])


def test_completion_writes_results_and_the_task_once(client: FlaskClient) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    assert _internal(client, job, "progress", worker="A", stage="dose", fraction=0.5).get_json()["state"] == "ok"
    progress = client.get(f"/fhir/Task/{job}").get_json()
    assert progress["businessStatus"]["text"] == "dose"
    outputs = [{"reference": f"Observation/{job[:8]}-voi-{i}"} for i in range(3)]
    ok = _internal(client, job, "complete", worker="A", resources=_result(job, 3), outputs=outputs)
    assert ok.status_code == 200
    again = _internal(client, job, "complete", worker="A", resources=_result(job, 3), outputs=outputs)
    # A refused internal call is an OperationOutcome naming the job's state (not {"state": ...}).
    assert again.status_code == 409 and _refused_state(again.get_json()) == "done"
    task = client.get(f"/fhir/Task/{job}").get_json()
    # the completion itself moves the Task to the last stage (the worker reports no "done")
    assert task["status"] == "completed" and task["businessStatus"]["text"] == "done"
    assert [o["valueReference"]["reference"] for o in task["output"]] == [o["reference"] for o in outputs]
    obs = client.get(f"/fhir/Observation/{job[:8]}-voi-2").get_json()
    assert obs["meta"]["versionId"] == "1"
    # A finished job is not claimed again (a redelivered message is dropped).
    assert _internal(client, job, "claim", worker="B").get_json()["granted"] is False


def test_cancel_stops_the_worker_at_its_next_report_and_nothing_is_written(client: FlaskClient) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    resp = client.delete(f"/fhir/Task/{job}")
    assert resp.status_code == 202 and resp.get_json()["status"] == "cancelled"
    assert _internal(client, job, "progress", worker="A", stage="dose", fraction=0.9).get_json()["state"] == "cancelled"
    done = _internal(client, job, "complete", worker="A", resources=_result(job, 1),
                     outputs=[{"reference": f"Observation/{job[:8]}-voi-0"}])
    assert done.status_code == 409
    assert client.get(f"/fhir/Observation/{job[:8]}-voi-0").status_code == 404
    task = client.get(f"/fhir/Task/{job}").get_json()
    assert task["status"] == "cancelled" and "cancelled" in task["statusReason"]["text"]


def test_cancelling_a_completed_job_is_a_conflict(client: FlaskClient) -> None:
    job, _ = _submit(client)
    _internal(client, job, "claim", worker="A")
    _internal(client, job, "complete", worker="A", resources=[], outputs=[])
    resp = client.delete(f"/fhir/Task/{job}")
    assert resp.status_code == 409
    assert resp.get_json()["issue"][0]["code"] == "conflict"


def test_failure_is_recorded_with_its_reason_and_a_new_request_retries(client: FlaskClient) -> None:
    job, _ = _submit(client)
    _internal(client, job, "claim", worker="A")
    _internal(client, job, "fail", worker="A", reason="the study has no NM or PT series")
    task = client.get(f"/fhir/Task/{job}").get_json()
    assert task["status"] == "failed" and "no NM or PT" in task["statusReason"]["text"]
    again, _ = _submit(client)
    assert again == job
    assert client.get(f"/fhir/Task/{job}").get_json()["status"] == "requested"


def test_internal_calls_need_the_internal_token(client: FlaskClient) -> None:
    job, _ = _submit(client)
    resp = client.post(f"/internal/jobs/{job}/claim", json={"worker": "A"}, headers={"X-Internal-Token": "wrong"})
    assert resp.status_code in (401, 403)
    resp = client.post(f"/internal/jobs/{job}/claim", json={"worker": "A"})
    assert resp.status_code in (401, 403)


@pytest.mark.parametrize(("params", "expression"), [
    ({"resourceType": "Parameters", "parameter": [{"name": "administeredActivityGBq", "valueDecimal": 3}]},
     "studyInstanceUid"),
    ({"resourceType": "Parameters", "parameter": [{"name": "studyInstanceUid", "valueString": STUDY_UID},
                                                  {"name": "administeredActivityGBq", "valueDecimal": -1}]},
     "valueDecimal"),
    ({"resourceType": "Parameters", "parameter": [{"name": "studyInstanceUid", "valueString": STUDY_UID},
                                                  {"name": "administeredActivityGBq", "valueDecimal": 3},
                                                  {"name": "method", "valueCode": "monte-carlo"}]},
     "method"),
    ({"resourceType": "Parameters", "parameter": [{"name": "studyInstanceUid", "valueString": "not a uid"},
                                                  {"name": "administeredActivityGBq", "valueDecimal": 3}]},
     "studyInstanceUid"),
])
def test_bad_parameters_are_422_naming_the_parameter_and_create_no_task(
        client: FlaskClient, params: dict[str, Any], expression: str) -> None:
    before = client.get("/fhir/Task").get_json()["total"]
    resp = client.post("/fhir/$voxel-dosimetry", json=params, headers={"Prefer": "respond-async"})
    assert resp.status_code == 422
    issue = resp.get_json()["issue"][0]
    assert any(expression in e for e in issue["expression"])
    assert client.get("/fhir/Task").get_json()["total"] == before


def test_broker_down_is_503_and_the_job_is_marked_failed(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "REDIS_URL": "redis://127.0.0.1:1/0", "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0",
        "LOG_LEVEL": "WARNING"})
    client = create_app(settings).test_client()
    resp = client.post("/fhir/$voxel-dosimetry", json=_params(), headers={"Prefer": "respond-async"})
    assert resp.status_code == 503 and resp.headers.get("Retry-After")
    tasks = client.get("/fhir/Task").get_json()
    assert [e["resource"]["status"] for e in tasks.get("entry", [])] == ["failed"]


def test_a_lost_message_is_sent_again_by_the_sweep(client: FlaskClient) -> None:
    import redis

    from gateway.jobs.sweep import resend_stale_jobs

    service = client.application.extensions["netliver"]["jobs"]
    broker = redis.Redis.from_url(service.dispatcher.celery.conf.broker_url)
    queue = service.dispatcher.queue
    job, _ = _submit(client)
    assert broker.llen(queue) == 1
    broker.delete(queue)  # the broker restarted and kept nothing
    assert resend_stale_jobs(service.jobs, service.dispatcher, older_than_s=3600) == []  # not stale yet
    time.sleep(0.05)
    assert resend_stale_jobs(service.jobs, service.dispatcher, older_than_s=0.01) == [job]
    assert broker.llen(queue) == 1
    # A claimed job with a live lease is left alone; once the lease has long run out it is re-sent.
    _internal(client, job, "claim", worker="A")
    broker.delete(queue)
    assert resend_stale_jobs(service.jobs, service.dispatcher, older_than_s=0.5) == []
    time.sleep(1.7)  # lease 1 s + 0.5 s
    assert resend_stale_jobs(service.jobs, service.dispatcher, older_than_s=0.5) == [job]
    # A finished job is never re-sent.
    _internal(client, job, "claim", worker="B")
    _internal(client, job, "complete", worker="B", resources=[], outputs=[])
    broker.delete(queue)
    time.sleep(1.7)
    assert resend_stale_jobs(service.jobs, service.dispatcher, older_than_s=0.5) == []
    assert broker.llen(queue) == 0


def _cancel_while_writing(client: FlaskClient, job: str, status: str) -> list[Any]:
    """Cancel the job from another thread at the moment the gateway writes a Task whose status is
    ``status`` (the interleaving of a cancel arriving between a worker's call and its Task write)."""
    import threading

    service = client.application.extensions["netliver"]["jobs"]
    store = service.store
    original = store.transaction
    threads: list[threading.Thread] = []

    def transaction(bundle: dict[str, Any], base_url: str, **kw: Any) -> Any:
        tasks = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"]
        if not threads and any(t["id"] == job and t["status"] == status for t in tasks):
            other = client.application.test_client()  # a second caller, its own request
            threads.append(threading.Thread(target=other.delete, args=(f"/fhir/Task/{job}",)))
            threads[0].start()
            threads[0].join(timeout=1.0)  # with the row locked, the cancel waits for this write
        return original(bundle, base_url, **kw)

    store.transaction = transaction
    return threads


def test_a_cancel_racing_a_claim_leaves_the_task_cancelled(client: FlaskClient) -> None:
    job, _ = _submit(client)
    threads = _cancel_while_writing(client, job, "in-progress")
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    threads[0].join(timeout=10)
    service = client.application.extensions["netliver"]["jobs"]
    assert service.jobs.get(job).state == "cancelled"
    assert client.get(f"/fhir/Task/{job}").get_json()["status"] == "cancelled"


def test_a_cancel_racing_a_progress_report_leaves_the_task_cancelled(client: FlaskClient) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    threads = _cancel_while_writing(client, job, "in-progress")
    assert _internal(client, job, "progress", worker="A", stage="dose", fraction=0.5).get_json()["state"] == "ok"
    threads[0].join(timeout=10)
    assert client.get(f"/fhir/Task/{job}").get_json()["status"] == "cancelled"
    assert _internal(client, job, "progress", worker="A", stage="dvh", fraction=0.9).get_json()["state"] == "cancelled"


def test_results_the_store_refuses_fail_the_job_instead_of_leaving_it_running(client: FlaskClient) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    invalid = [{"resourceType": "Observation", "id": f"{job[:8]}-voi-0", "status": "final",
                "code": {"text": "VOI dose"}, "valueQuantity": {"value": "twelve", "unit": "Gy"}}]
    resp = _internal(client, job, "complete", worker="A", resources=invalid,
                     outputs=[{"reference": f"Observation/{job[:8]}-voi-0"}])
    assert resp.status_code == 409 and _refused_state(resp.get_json()) == "failed"
    task = client.get(f"/fhir/Task/{job}").get_json()
    assert task["status"] == "failed" and "refused" in task["statusReason"]["text"]
    assert client.get(f"/fhir/Observation/{job[:8]}-voi-0").status_code == 404
    # The sweep does not send it again, and a new request runs it anew.
    service = client.application.extensions["netliver"]["jobs"]
    assert job not in service.jobs.stale(0)


def test_valid_results_are_still_written_after_the_refusal_fix(client: FlaskClient) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    resp = _internal(client, job, "complete", worker="A", resources=_result(job, 1),
                     outputs=[{"reference": f"Observation/{job[:8]}-voi-0"}])
    assert resp.status_code == 200 and resp.get_json()["state"] == "ok"
    obs = client.get(f"/fhir/Observation/{job[:8]}-voi-0").get_json()
    # Tagged as a computed result, like the synchronous operations' results, so that gathering a
    # patient's record for eligibility never takes it for an input.
    assert "derived-result" in [t["code"] for t in obs["meta"]["tag"]]


def test_two_processes_submitting_the_same_job_at_once_make_one_job(client: FlaskClient) -> None:
    job, _ = _submit(client)
    service = client.application.extensions["netliver"]["jobs"]
    real_get = service.jobs.get
    calls: list[str] = []

    def get_as_if_not_yet_committed(job_id: str, conn: Any = None) -> Any:
        calls.append(job_id)  # the other process read before the first one committed
        return None if len(calls) == 1 else real_get(job_id, conn)

    service.jobs.get = get_as_if_not_yet_committed
    second, resp = _submit(client)
    assert second == job and resp.get_json()["status"] == "requested"


def test_a_completion_may_only_write_the_job_s_result_types(client: FlaskClient) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    patient = {"resourceType": "Patient", "id": "someone-else", "name": [{"family": "Overwritten"}]}
    resp = _internal(client, job, "complete", worker="A", resources=[*_result(job, 1), patient], outputs=[])
    assert resp.status_code == 409 and _refused_state(resp.get_json()) == "failed"
    assert client.get("/fhir/Patient/someone-else").status_code == 404
    assert client.get(f"/fhir/Observation/{job[:8]}-voi-0").status_code == 404
    assert "Patient" in client.get(f"/fhir/Task/{job}").get_json()["statusReason"]["text"]


def test_internal_calls_without_a_worker_name_or_with_a_bad_fraction_are_400(client: FlaskClient) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    # An empty worker name would pass the lease check ("" is the requester's cancel), so a
    # completion without a name could finish a job another worker holds.
    nameless = _internal(client, job, "complete", resources=_result(job, 1), outputs=[])
    assert nameless.status_code == 400 and nameless.get_json()["issue"][0]["expression"] == ["worker"]
    assert client.get(f"/fhir/Task/{job}").get_json()["status"] == "in-progress"
    bad = _internal(client, job, "progress", worker="A", stage="dose", fraction="half")
    assert bad.status_code == 400 and bad.get_json()["issue"][0]["expression"] == ["fraction"]


def test_a_study_handled_again_after_its_patient_was_registered_starts_no_second_job(client: FlaskClient) -> None:
    # The hook ran before the EHR registered the patient; the catch-up handles the same stable
    # study again afterwards (contract: repeated posts of the same study start no duplicate job).
    from gateway.pacs_hook import StableStudyHandler, StudyInfo

    app = client.application
    ext = app.extensions["netliver"]
    info = StudyInfo(orthanc_id="o1", study_uid=STUDY_UID, patient_id="MRN-77", patient_name="Doe^Jane",
                     study_date="20261101", description="Y-90 PET/CT",
                     series=[{"uid": "1.2.3.4", "modality": "PT", "instances": 1}],
                     kind="y90-pet", activity_gbq=2.1, reason="Y-90 PT study")
    with app.test_request_context(base_url="http://127.0.0.1:8080"):
        handler = StableStudyHandler(ext["deps"])
        handler.orthanc.study = lambda orthanc_id: info  # type: ignore[method-assign]
        first = handler.handle("o1")
        assert first["started"] is True
        patient = {"resourceType": "Patient", "id": "jane",
                   "identifier": [{"system": "urn:hospital:mrn", "value": "MRN-77"}]}
        assert client.put("/fhir/Patient/jane", json=patient).status_code in (200, 201)
        again = handler.handle("o1")
    assert again["job"] == first["job"] and again["started"] is False


def test_a_failed_job_asked_for_again_runs_with_the_new_request_s_parameters(client: FlaskClient) -> None:
    service = client.application.extensions["netliver"]["jobs"]
    identity = {"studyInstanceUid": STUDY_UID, "administeredActivityGBq": 2.0, "method": "ldm"}
    with client.application.test_request_context(base_url="http://127.0.0.1:8080"):
        job, _ = service.submit("voxel-dosimetry", dict(identity), identity)
        service.claim(job.id, "A")
        service.fail(job.id, "A", "PACS down")
        again, sent = service.submit("voxel-dosimetry", {**identity, "patient": "Patient/jane"}, identity)
    assert again.id == job.id and sent
    claimed = _internal(client, job.id, "claim", worker="B").get_json()
    # The worker runs what the Task says: both carry the patient of the new request.
    assert claimed["job"]["params"].get("patient") == "Patient/jane"
    assert client.get(f"/fhir/Task/{job.id}").get_json()["for"]["reference"] == "Patient/jane"


@pytest.mark.parametrize(("body", "expression"), [
    ({"resources": [], "outputs": [5]}, "outputs[0]"),
    ({"resources": [], "outputs": [{"type": "Observation"}]}, "outputs[0].reference"),
    ({"resources": [], "outputs": [], "timings": {"dose": "slow"}}, "timings.dose"),
    ({"resources": {"resourceType": "Observation"}, "outputs": []}, "resources"),
])
def test_a_malformed_completion_is_400_and_fails_the_job_instead_of_looping(
        client: FlaskClient, body: dict[str, Any], expression: str) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    resp = _internal(client, job, "complete", worker="A", **body)
    assert resp.status_code == 400 and resp.get_json()["issue"][0]["expression"] == [expression]
    task = client.get(f"/fhir/Task/{job}").get_json()
    assert task["status"] == "failed" and "malformed" in task["statusReason"]["text"]


def test_the_status_url_answers_202_with_progress_until_the_job_completes(client: FlaskClient) -> None:
    """FHIR R4 asynchronous pattern: 202 + X-Progress + Retry-After while queued or running (a
    200 then would read as finished), 200 + batch-response Bundle once done; the Task stays."""
    job, _ = _submit(client)
    queued = client.get(f"/fhir/_async/{job}")
    assert queued.status_code == 202
    assert queued.headers["X-Progress"] and int(queued.headers["Retry-After"]) > 0
    _internal(client, job, "claim", worker="A")
    _internal(client, job, "progress", worker="A", stage="dose", fraction=0.4)
    running = client.get(f"/fhir/_async/{job}")
    assert running.status_code == 202 and running.headers["X-Progress"] == "dose 40%"
    _internal(client, job, "complete", worker="A", resources=_result(job, 2),
              outputs=[{"reference": f"Observation/{job[:8]}-voi-{i}"} for i in range(2)])
    done = client.get(f"/fhir/_async/{job}")
    assert done.status_code == 200
    bundle = done.get_json()
    assert bundle["type"] == "batch-response"
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Task", "Observation", "Observation"]
    assert bundle["entry"][0]["resource"]["status"] == "completed"
    assert client.get(f"/fhir/Task/{job}").get_json()["status"] == "completed"


def test_the_status_url_of_a_failed_job_is_its_error_and_a_cancelled_one_is_gone(client: FlaskClient) -> None:
    job, _ = _submit(client)
    _internal(client, job, "claim", worker="A")
    _internal(client, job, "fail", worker="A", reason="the series has no attenuation CT")
    failed = client.get(f"/fhir/_async/{job}")
    assert failed.status_code == 422
    assert failed.get_json()["issue"][0]["diagnostics"] == "the series has no attenuation CT"
    assert client.get(f"/fhir/Task/{job}").get_json()["status"] == "failed"
    other, _ = _submit(client, activity=2.0)
    assert client.delete(f"/fhir/_async/{other}").status_code == 202
    assert client.get(f"/fhir/_async/{other}").status_code == 404
    assert client.get(f"/fhir/Task/{other}").get_json()["status"] == "cancelled"
    assert client.get("/fhir/_async/no-such-job").status_code == 404


def test_a_job_failed_by_a_dependency_outage_reports_503_on_its_status_url(client: FlaskClient) -> None:
    job, _ = _submit(client)
    _internal(client, job, "claim", worker="A")
    _internal(client, job, "fail", worker="A", reason="the PACS is unavailable (ConnectionError)")
    failed = client.get(f"/fhir/_async/{job}")
    assert failed.status_code == 503 and failed.headers["Retry-After"]


def test_a_completion_note_is_the_tasks_status_reason(client: FlaskClient) -> None:
    # The worker kept the dose results while the PACS refused the RT Dose: the Task says so.
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    note = "the RT Dose was not stored in the PACS: the PACS could not be reached (ConnectionError), 4 attempts"
    outputs = [{"reference": f"Observation/{job[:8]}-voi-0"}]
    ok = _internal(client, job, "complete", worker="A", resources=_result(job, 1), outputs=outputs, note=note)
    assert ok.status_code == 200
    task = client.get(f"/fhir/Task/{job}").get_json()
    assert task["status"] == "completed" and task["statusReason"]["text"] == note
    assert len(task["output"]) == 1


def test_a_completed_job_s_report_names_its_forms_and_they_are_drawn_on_first_read(client: FlaskClient) -> None:
    job, _ = _submit(client)
    assert _internal(client, job, "claim", worker="A").get_json()["granted"]
    report = {"resourceType": "DiagnosticReport", "id": f"{job[:8]}-report", "status": "final",
              "code": {"text": "Voxel dosimetry report"}, "subject": {"reference": "Patient/p1"},
              "result": [{"reference": f"Observation/{job[:8]}-voi-0"}]}
    resources = [report, *_result(job, 1)]
    ok = _internal(client, job, "complete", worker="A", resources=resources,
                   outputs=[{"reference": f"DiagnosticReport/{job[:8]}-report"}])
    assert ok.status_code == 200, ok.get_json()
    stored = client.get(f"/fhir/DiagnosticReport/{job[:8]}-report").get_json()
    (pdf,) = stored["presentedForm"]
    assert pdf["contentType"] == "application/pdf" and pdf["url"] == f"Binary/{job[:8]}-report-pdf" and "data" not in pdf
    assert client.get(f"/fhir/Binary/{job[:8]}-report-pdf", headers={"Accept": "application/fhir+json"}) \
        .get_json()["contentType"] == "application/pdf"
    drawn = client.get(f"/fhir/Binary/{job[:8]}-report-pdf", headers={"Accept": "application/pdf"})
    expected = with_presented_forms(resources)[0]["presentedForm"][0]["data"]
    assert drawn.status_code == 200 and base64.b64encode(drawn.data).decode() == expected
