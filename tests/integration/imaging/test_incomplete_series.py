"""A study Orthanc calls stable while its PET series is still arriving (an upload that paused
longer than StableAge): the hook starts no job on part of the series, and a job run on it anyway
fails naming the missing instances, instead of spreading the whole activity over part of the body.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from infra.orthanc_process import OrthancProcess
from netliver.settings import Settings
from services.dosimetry.imaging import phantoms as ph
from services.dosimetry.imaging.dicomweb import make_client
from services.dosimetry.imaging.errors import ImagingError
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry

TOKEN = "test-internal-token"


@pytest.fixture
def gateway(orthanc: OrthancProcess, tmp_path: Path) -> Iterator[FlaskClient]:
    settings = Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "INTERNAL_TOKEN": TOKEN,
        "ORTHANC_URL": orthanc.url, "DICOMWEB_URL": orthanc.dicomweb_url, "ORTHANC_CATCHUP_S": "0",
        "JOB_QUEUE": f"netliver-test-{uuid.uuid4().hex[:8]}", "JOB_SWEEP_S": "0",
        "RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "WARNING"})
    app = create_app(settings)
    yield app.test_client()
    app.extensions["netliver"]["store"].close()


def _hook(client: FlaskClient, orthanc_id: str) -> Any:
    resp = client.post("/hooks/orthanc/stable-study", json={"ID": orthanc_id}, headers={"X-Internal-Token": TOKEN})
    assert resp.status_code in (200, 202), resp.get_json()
    return resp.get_json()


def test_the_hook_waits_for_the_whole_pet_series_then_starts_the_job(orthanc: OrthancProcess,
                                                                      gateway: FlaskClient) -> None:
    study = ph.build_study(ph.two_compartment_liver(n=24), "PT", seed=31, total_activity_gbq=2.0)
    assert study.seg is not None
    # CT and SEG first, then 15 of the 24 PET slices: the upload pauses here
    answers = ph.upload_datasets(orthanc.url, [*study.ct, study.seg, *study.activity[:15]])
    orthanc_id = str(answers[0]["ParentStudy"])
    early = _hook(gateway, orthanc_id)
    assert early["job"] is None and early["kind"] == "y90-pet"
    assert "holds 15 of the 24 instances" in early["reason"] and "starts once the series is complete" in early["reason"]
    assert gateway.get("/fhir/Task").get_json().get("total", 0) == 0
    # the rest arrives; Orthanc calls the study stable again
    ph.upload_datasets(orthanc.url, study.activity[15:])
    late = _hook(gateway, orthanc_id)
    assert late["started"] is True and late["job"].startswith("Task/")
    task = gateway.get(f"/fhir/{late['job']}").get_json()
    # the job reads the SEG that arrived before the PET
    assert any(i.get("valueString") == str(study.seg.SeriesInstanceUID) for i in task["input"])


def test_a_job_on_part_of_a_pet_series_fails_naming_the_missing_instances(orthanc: OrthancProcess) -> None:
    study = ph.build_study(ph.sphere_in_cylinder(n=24), "PT", seed=32, with_seg=False)
    ph.upload_datasets(orthanc.url, [*study.ct, *study.activity[:-1]])  # the last slice is missing
    client = make_client(orthanc.dicomweb_url)
    with pytest.raises(ImagingError) as err:
        run_voxel_dosimetry(client, study.study_uid, 2.0, "ldm", store=False)
    assert "holds 23 of the 24 instances" in err.value.message and err.value.expression == "studyInstanceUid"
    # complete, the same study runs
    ph.upload_datasets(orthanc.url, study.activity[-1:])
    assert run_voxel_dosimetry(client, study.study_uid, 2.0, "ldm", store=False).vois


def test_a_notification_asking_respond_async_is_answered_first_and_handled_after(orthanc: OrthancProcess,
                                                                                 gateway: FlaskClient) -> None:
    """What the Orthanc Lua script sends: 202 at once, the study then resolved, recorded and its
    job started as a synchronous notification would; a malformed one is still refused at once."""
    study = ph.build_study(ph.two_compartment_liver(n=24), "PT", seed=32, total_activity_gbq=2.0)
    orthanc_id = ph.upload_study(orthanc.url, study)
    headers = {"X-Internal-Token": TOKEN, "Prefer": "respond-async"}
    resp = gateway.post("/hooks/orthanc/stable-study", json={"ID": orthanc_id}, headers=headers)
    assert resp.status_code == 202 and resp.get_json() == {"ID": orthanc_id, "accepted": True}
    deadline = time.monotonic() + 60
    tasks: list[dict[str, Any]] = []
    while not tasks and time.monotonic() < deadline:
        bundle = gateway.get("/fhir/Task").get_json()
        tasks = [e["resource"] for e in bundle.get("entry", [])]
        time.sleep(0.1)
    assert len(tasks) == 1 and any(i.get("valueString") == study.study_uid for i in tasks[0]["input"])
    studies = gateway.get("/fhir/ImagingStudy").get_json()
    assert [e["resource"]["identifier"][0]["value"] for e in studies["entry"]] == [f"urn:oid:{study.study_uid}"]
    # the same study notified synchronously names the job the asynchronous one started
    again = _hook(gateway, orthanc_id)
    assert again["job"] == f"Task/{tasks[0]['id']}" and again["started"] is False
    bad = gateway.post("/hooks/orthanc/stable-study", json={"ID": "../studies"}, headers=headers)
    assert bad.status_code == 400 and bad.get_json()["issue"][0]["expression"] == ["ID"]
