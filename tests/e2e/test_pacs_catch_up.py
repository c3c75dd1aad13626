"""Missed stable-study notifications are caught up from Orthanc's ``/changes`` feed with a
durable cursor: the PACS here has no Lua hook at all, as if every notification were lost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infra.orthanc_process import orthanc_available
from infra.stack import Stack, free_port
from services.dosimetry.imaging import phantoms as ph
from tests.support.stack import make_stack, poll, running

pytestmark = pytest.mark.skipif(not orthanc_available(), reason="Orthanc is not installed (make system-deps)")

TOKEN = "catch-up-token"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = make_stack(tmp_path_factory.mktemp("catchup"), workers=0, with_orthanc=True,
                   env={"INTERNAL_TOKEN": TOKEN, "ORTHANC_CATCHUP_S": "0"})
    s.config.orthanc_hook = False
    with running(s):
        yield s


def _catch_up(url: str) -> dict[str, Any]:
    resp = requests.post(f"{url}/hooks/orthanc/catch-up", headers={"X-Internal-Token": TOKEN}, timeout=60)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _stable(orthanc: str, orthanc_id: str) -> bool:
    changes = requests.get(f"{orthanc}/changes", params={"limit": "1000"}, timeout=10).json()
    return any(c["ChangeType"] == "StableStudy" and c["ID"] == orthanc_id for c in changes["Changes"])


def test_catch_up_handles_each_stable_study_once_and_keeps_its_cursor(stack: Stack) -> None:
    orthanc = f"http://127.0.0.1:{stack.config.orthanc_port}"
    gw = stack.gateway_url
    study = ph.build_study(ph.sphere_in_cylinder(n=32), "PT", seed=21, total_activity_gbq=1.2)
    orthanc_id = ph.upload_study(orthanc, study)
    poll(lambda: _stable(orthanc, orthanc_id), bool, timeout_s=30)
    first = _catch_up(gw)
    handled = [h for h in first["handled"] if h.get("job")]
    assert len(handled) == 1 and handled[0]["kind"] == "y90-pet"
    task_id = handled[0]["job"].split("/")[1]
    task = requests.get(f"{gw}/fhir/Task/{task_id}", timeout=10).json()
    assert task["status"] == "requested"  # no worker in this stack: the job waits in the queue
    assert _catch_up(gw)["handled"] == []  # the cursor moved past it
    # The cursor survives a gateway restart.
    stack.kill("gateway", 15)
    from infra.stack import _wait_http
    proc = stack._gunicorn("gateway", "gateway.app:create_app()", stack.config.gateway_port, 2)
    _wait_http(f"{gw}/fhir/metadata", 60, proc)
    assert _catch_up(gw)["handled"] == []
    # A non-dosimetry study (CT only) is recorded as an ImagingStudy but starts no job.
    ct_only = ph.build_study(ph.sphere_in_cylinder(n=24), "NM", seed=22)
    ct_id = ph.upload_study(orthanc, ph.with_changes(ct_only, activity=[]), include_seg=False)
    poll(lambda: _stable(orthanc, ct_id), bool, timeout_s=30)
    later = _catch_up(gw)["handled"]
    assert [h["kind"] for h in later] == ["none"] and "job" not in later[0]
    assert requests.get(f"{gw}/fhir/{later[0]['imagingStudy']}", timeout=10).status_code == 200


def test_the_periodic_catch_up_starts_missed_jobs_by_itself(stack: Stack) -> None:
    orthanc = f"http://127.0.0.1:{stack.config.orthanc_port}"
    url = stack.start_gateway("gateway-periodic", free_port(), {"ORTHANC_CATCHUP_S": "1"})
    study = ph.build_study(ph.sphere_in_cylinder(n=32), "PT", seed=23, total_activity_gbq=1.4)
    ph.upload_study(orthanc, study)

    def tasks() -> list[dict[str, Any]]:
        bundle = requests.get(f"{url}/fhir/Task", params={"_count": "100"}, timeout=10).json()
        return [e["resource"] for e in bundle.get("entry", [])
                if any(i.get("valueString") == study.study_uid for i in e["resource"].get("input", []))]

    assert len(poll(tasks, lambda t: len(t) == 1, timeout_s=60)) == 1
