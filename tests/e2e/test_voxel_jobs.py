"""Voxel-dosimetry jobs end to end: a real Orthanc PACS (Debian packages) with the stable-study
Lua script, the gateway, real Celery workers on the real Redis broker, results in the FHIR store
and the RT Dose back in the PACS.

The worker-kill test sends SIGKILL to the process group of the worker that holds the job, mid-run,
and checks that the other worker completes it exactly once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infra.orthanc_process import orthanc_available
from infra.stack import Stack
from netliver.fhir.builders import canonical_json, deterministic_id
from services.dosimetry.imaging import phantoms as ph
from tests.support.stack import make_stack, poll, running

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not orthanc_available(), reason="Orthanc is not installed (make system-deps)")]

TOKEN = "e2e-internal-token"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(make_stack(tmp_path_factory.mktemp("voxel"), workers=2, with_orthanc=True, env={
            "INTERNAL_TOKEN": TOKEN, "JOB_LEASE_S": "4", "JOB_VISIBILITY_TIMEOUT_S": "8",
            "JOB_RESTORE_INTERVAL_S": "2",
            "ORTHANC_CATCHUP_S": "0"})) as s:
        yield s


def _task(gw: str, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{gw}/fhir/Task/{task_id}", timeout=10).json()
    return body


def _job(gw: str, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{gw}/internal/jobs/{job_id}", headers={"X-Internal-Token": TOKEN},
                                        timeout=10).json()
    return body


def _submit(gw: str, study_uid: str, activity_gbq: float, method: str = "ldm") -> str:
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "studyInstanceUid", "valueString": study_uid},
        {"name": "administeredActivityGBq", "valueDecimal": activity_gbq},
        {"name": "method", "valueCode": method}]}
    resp = requests.post(f"{gw}/fhir/$voxel-dosimetry", json=params, headers={"Prefer": "respond-async"}, timeout=30)
    assert resp.status_code == 202, resp.text
    return str(resp.headers["Content-Location"]).rsplit("/", 1)[1]


def _done(task: dict[str, Any]) -> bool:
    return task.get("status") in {"completed", "failed", "cancelled"}


def _orthanc_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.orthanc_port}"


def test_stable_study_trigger_runs_one_job_and_writes_results(stack: Stack) -> None:
    gw = stack.gateway_url
    study = ph.build_study(ph.two_compartment_liver(n=40), "PT", seed=11, total_activity_gbq=2.0)
    orthanc_id = ph.upload_study(_orthanc_url(stack), study)
    # The Lua script posts once the study is stable; the hook records the ImagingStudy and the job.

    def tasks_of_study() -> list[dict[str, Any]]:
        bundle = requests.get(f"{gw}/fhir/Task", params={"_count": "100"}, timeout=10).json()
        return [e["resource"] for e in bundle.get("entry", [])
                if any(i.get("valueString") == study.study_uid for i in e["resource"].get("input", []))]

    task = poll(tasks_of_study, lambda tasks: len(tasks) == 1, timeout_s=60)[0]
    done = poll(lambda: _task(gw, task["id"]), _done, timeout_s=120)
    assert done["status"] == "completed", done.get("statusReason")
    # A second notification of the same study starts nothing new.
    again = requests.post(f"{gw}/hooks/orthanc/stable-study", json={"ID": orthanc_id},
                          headers={"X-Internal-Token": TOKEN}, timeout=30)
    assert again.status_code == 202 and again.json()["job"] == f"Task/{task['id']}"
    assert again.json()["started"] is False
    assert _job(gw, task["id"])["attempts"] == 1
    # Orthanc's notification was answered (not given up after its HTTP timeout while the gateway
    # waited on Orthanc's Lua lock to resolve the study)
    log = stack.orthanc.log_tail(200_000)
    assert f"stable study {orthanc_id} notified" in log, log[-2000:]
    assert f"notification for {orthanc_id}" not in log, log[-2000:]
    report_ref = next(o["valueReference"]["reference"] for o in done["output"] if "DiagnosticReport" in o["valueReference"]["reference"])
    report = requests.get(f"{gw}/fhir/{report_ref}", timeout=10).json()
    assert report["status"] == "final" and report["imagingStudy"]
    obs = [requests.get(f"{gw}/fhir/{r['reference']}", timeout=10).json() for r in report["result"]]
    metrics = {o["bodySite"]["text"].split(" (")[0]: {c["code"]["text"]: c["valueQuantity"]["value"] for c in o["component"]}
               for o in obs}
    for voi in metrics.values():
        assert {"Dmean", "D50", "D70", "D90", "V100", "V120"} <= set(voi)
        assert voi["D90"] <= voi["D70"] <= voi["D50"]
        # Local deposition (EANM): mean dose = C · A · (share of the counts) / mass, here with
        # C = 49.67 Gy·kg/GBq and A = 2.0 GBq, read back from the FHIR results.
        expected = 49.67 * 2.0 * (voi["share of the counts"] / 100) / (voi["VOI mass"] / 1000)
        assert voi["Dmean"] == pytest.approx(expected, rel=0.01)
    # T/N = 4 by design: the tumours' mean dose is about four times the whole liver's minus tumours.
    assert metrics["tumour 1"]["Dmean"] > 2.5 * metrics["liver"]["Dmean"]
    imaging = requests.get(f"{gw}/fhir/{report['imagingStudy'][0]['reference']}", timeout=10).json()
    assert imaging["endpoint"] and imaging["series"]
    # The dose map is back in the PACS study as RT Dose.
    series = requests.get(f"{_orthanc_url(stack)}/studies/{orthanc_id}/series", timeout=10).json()
    assert "RTDOSE" in {s["MainDicomTags"]["Modality"] for s in series}


def test_a_worker_killed_mid_job_is_replaced_and_the_job_completes_exactly_once(stack: Stack) -> None:
    gw = stack.gateway_url
    study = ph.build_study(ph.two_compartment_liver(n=88), "NM", seed=12, total_activity_gbq=2.5)
    ph.upload_study(_orthanc_url(stack), study)
    task_id = _submit(gw, study.study_uid, 2.5, method="dvk")
    running = poll(lambda: _task(gw, task_id), lambda t: t.get("status") == "in-progress" and "owner" in t,
                   timeout_s=60, interval_s=0.05)
    owner = running["owner"]["display"]
    pid = int(owner.rsplit(":", 1)[1])
    victim = next(name for name, proc in stack.procs.items()
                  if name.startswith("worker") and _is_in_group(pid, proc.pid))
    stack.kill(victim, signal.SIGKILL)
    done = poll(lambda: _task(gw, task_id), _done, timeout_s=180, interval_s=0.5)
    assert done["status"] == "completed", done.get("statusReason")
    job = _job(gw, task_id)
    assert job["attempts"] == 2 and job["completions"] == 1
    assert job["leaseOwner"] != owner
    for out in done["output"]:
        res = requests.get(f"{gw}/fhir/{out['valueReference']['reference']}", timeout=10).json()
        assert res["meta"]["versionId"] == "1", res["meta"]
    stack.start_worker()  # back to two workers for the next tests


def _is_in_group(pid: int, pgid: int) -> bool:
    try:
        return os.getpgid(pid) == pgid
    except ProcessLookupError:
        return False


def test_cancel_mid_run_writes_nothing_and_the_worker_takes_the_next_job(stack: Stack) -> None:
    gw = stack.gateway_url
    study = ph.build_study(ph.sphere_in_cylinder(n=88), "NM", seed=13, total_activity_gbq=1.5)
    ph.upload_study(_orthanc_url(stack), study)
    task_id = _submit(gw, study.study_uid, 1.5, method="dvk")
    poll(lambda: _task(gw, task_id), lambda t: t.get("status") == "in-progress", timeout_s=60, interval_s=0.05)
    resp = requests.delete(f"{gw}/fhir/Task/{task_id}", timeout=10)
    assert resp.status_code == 202 and resp.json()["status"] == "cancelled"
    # the worker learns of the cancel at its next progress report: once it has logged the end
    # of the job, whatever it would have written has been sent
    poll(lambda: _worker_logged_the_end(stack, task_id), bool, timeout_s=120, interval_s=0.1)
    cancelled = _task(gw, task_id)
    assert cancelled["status"] == "cancelled" and "output" not in cancelled
    # The report this job would have written (its id is determined by the job's parameters).
    params = _job(gw, task_id)["params"]
    report_id = deterministic_id("dosimetry", "voxel-report", canonical_json(params))
    assert requests.get(f"{gw}/fhir/DiagnosticReport/{report_id}", timeout=10).status_code == 404
    # The workers are healthy: a new job completes.
    next_id = _submit(gw, study.study_uid, 1.0, method="ldm")
    assert poll(lambda: _task(gw, next_id), _done, timeout_s=120)["status"] == "completed"


def _worker_logged_the_end(stack: Stack, job_id: str) -> bool:
    """A worker's log has the end of ``job_id``: cancelled, finished (whatever the gateway
    answered) or failed."""
    ends = ('"job cancelled; nothing written"', '"job finished"', '"job failed"')
    return any(job_id in line and any(end in line for end in ends)
               for path in stack.log_dir.glob("worker*.log")
               for line in path.read_text(errors="replace").splitlines())


def test_a_study_without_nm_or_pt_fails_with_a_clear_reason(stack: Stack) -> None:
    gw = stack.gateway_url
    study = ph.build_study(ph.sphere_in_cylinder(n=32), "NM", seed=14)
    ph.upload_datasets(_orthanc_url(stack), study.ct)
    task_id = _submit(gw, study.study_uid, 2.0)
    done = poll(lambda: _task(gw, task_id), _done, timeout_s=60)
    assert done["status"] == "failed"
    assert "NM" in done["statusReason"]["text"] and "PT" in done["statusReason"]["text"]
    assert "output" not in done


def test_an_unreachable_pacs_fails_the_task_and_the_hook_answers_503(stack: Stack) -> None:
    from infra.stack import free_port
    url = stack.start_gateway("gateway-nopacs", free_port(), {
        "ORTHANC_URL": f"http://127.0.0.1:{free_port()}"})
    resp = requests.post(f"{url}/hooks/orthanc/stable-study", json={"ID": "00000000-00000000-00000000-00000000-00000000"},
                         headers={"X-Internal-Token": TOKEN}, timeout=30)
    assert resp.status_code == 503 and resp.headers.get("Retry-After")
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_a_truncated_instance_fails_the_task_naming_it_and_the_worker_takes_the_next_job(stack: Stack) -> None:
    """A PET slice whose file lost its last 100 bytes (Orthanc stores it): the job fails with a
    statusReason naming the instance and its Pixel Data, and the workers go on."""
    import io

    import pydicom

    gw = stack.gateway_url
    study = ph.build_study(ph.sphere_in_cylinder(n=32), "PT", seed=15, with_seg=False)
    cut = pydicom.dcmread(io.BytesIO(ph.dataset_bytes(study.activity[7])[:-100]))
    ph.upload_datasets(_orthanc_url(stack), [*study.activity[:7], cut, *study.activity[8:], *study.ct])
    task_id = _submit(gw, study.study_uid, 2.0)
    done = poll(lambda: _task(gw, task_id), _done, timeout_s=120)
    assert done["status"] == "failed" and "output" not in done
    reason = done["statusReason"]["text"]
    assert "PixelData (7FE0,0010)" in reason and str(cut.SOPInstanceUID) in reason
    good = ph.build_study(ph.sphere_in_cylinder(n=32), "PT", seed=16, with_seg=False)
    ph.upload_study(_orthanc_url(stack), good)
    next_id = _submit(gw, good.study_uid, 2.0)
    assert poll(lambda: _task(gw, next_id), _done, timeout_s=120)["status"] == "completed"


def test_an_upload_that_pauses_past_stable_age_starts_the_job_only_once_the_series_is_complete(stack: Stack) -> None:
    """Orthanc calls a study stable after StableAge (2 s here) without an instance: an upload
    that pauses longer makes the Lua hook post a study whose PET series is half there. No job
    starts on it; when the rest arrives, Orthanc posts again and the job runs on all slices."""
    from netliver.fhir.builders import imaging_study_id

    gw = stack.gateway_url
    phantom = ph.sphere_in_cylinder(n=24)
    study = ph.build_study(phantom, "PT", seed=17, total_activity_gbq=1.0)
    assert study.seg is not None
    ph.upload_datasets(_orthanc_url(stack), [*study.ct, study.seg, *study.activity[:12]])  # the sender pauses
    imaging = f"{gw}/fhir/ImagingStudy/{imaging_study_id(study.study_uid)}"
    # the hook ran on the paused upload (on a busy machine the sender may also pause earlier,
    # e.g. between the SEG and the PET, and Orthanc then calls the study stable once more)
    paused = len(study.ct) + 1 + 12
    seen = poll(lambda: requests.get(imaging, timeout=10),
                lambda r: r.status_code == 200 and r.json().get("numberOfInstances") == paused, timeout_s=60).json()
    assert seen["numberOfInstances"] == paused

    def tasks_of_study() -> list[dict[str, Any]]:
        bundle = requests.get(f"{gw}/fhir/Task", params={"_count": "100"}, timeout=10).json()
        return [e["resource"] for e in bundle.get("entry", [])
                if any(i.get("valueString") == study.study_uid for i in e["resource"].get("input", []))]

    assert tasks_of_study() == []
    ph.upload_datasets(_orthanc_url(stack), study.activity[12:])
    [task] = poll(tasks_of_study, lambda tasks: len(tasks) == 1, timeout_s=60)
    done = poll(lambda: _task(gw, task["id"]), _done, timeout_s=120)
    assert done["status"] == "completed", done.get("statusReason")
    report_ref = next(o["valueReference"]["reference"] for o in done["output"]
                      if o["valueReference"]["reference"].startswith("DiagnosticReport/"))
    report = requests.get(f"{gw}/fhir/{report_ref}", timeout=10).json()
    sphere = next(o for o in (requests.get(f"{gw}/fhir/{r['reference']}", timeout=10).json() for r in report["result"])
                  if o["bodySite"]["text"].startswith("sphere"))
    volume = next(c["valueQuantity"]["value"] for c in sphere["component"] if c["code"].get("text") == "VOI volume")
    # the whole sphere of the design, not the half in the first 12 slices
    assert volume == pytest.approx(int(phantom.mask("sphere").sum()) * phantom.voxel_ml, abs=0.01)
    assert requests.get(imaging, timeout=10).json()["numberOfInstances"] == len(study.ct) + 1 + 24
