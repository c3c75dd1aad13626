"""Every project code that an operation writes is in the CodeSystem the gateway serves.

The gateway serves ``GET /fhir/CodeSystem/{id}`` from a process that imports no service, so the
served CodeSystems are read from a fresh gateway process; the written resources come from every
operation run in this process (eligibility, tumour response, SIRT planning, voxel dosimetry).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.demo_follow_up import synthetic_follow_up_bundle
from infra.demo_patients import (
    EVALUATION_DATE,
    cazzato_fig5_sirt_77f,
    realistic_patient,
)
from netliver.fhir.codesystems import CANONICAL_BASE, CODESYSTEMS
from netliver.settings import Settings
from services.dosimetry.imaging.phantoms import build_study, two_compartment_liver
from tests.support.memory_dicomweb import MemoryDicomweb

pytestmark = pytest.mark.integration  # starts a gateway process

PROJECT_SYSTEMS = f"{CANONICAL_BASE}/CodeSystem/"
ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/integration/<this file>

_SERVED = """
import json, sys
from netliver.settings import Settings
from gateway.app import create_app
db = sys.argv[1]
settings = Settings.from_env({"AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{db}", "LOG_LEVEL": "WARNING",
                              "ORTHANC_URL": "http://127.0.0.1:9", "ORTHANC_CATCHUP_S": "0", "JOB_SWEEP_S": "0",
                              "RATE_LIMIT_PER_MINUTE": "0"})
client = create_app(settings).test_client()
served = {}
for system_id in sys.argv[2:]:
    answer = client.get(f"/fhir/CodeSystem/{system_id}")
    assert answer.status_code == 200, (system_id, answer.status_code)
    body = answer.get_json()
    served[body["url"]] = [c["code"] for c in body["concept"]]
print(json.dumps(served))
"""


@pytest.fixture(scope="module")
def served_codes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Codes per CodeSystem URL as a gateway process (which imports no service) serves them."""
    db = tmp_path_factory.mktemp("served") / "store.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _SERVED, str(db), *CODESYSTEMS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return {url: set(codes) for url, codes in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def _codings(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
            yield node["system"], node["code"]
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _codings(item)


def _written_by_every_operation() -> list[dict[str, Any]]:
    from services.dosimetry.app import create_app as dosimetry_app
    from services.eligibility.app import create_app as eligibility_app
    from services.response.app import create_app as response_app

    settings = Settings.from_env({"AUTH_MODE": "off", "LOG_LEVEL": "WARNING"})
    written: list[dict[str, Any]] = []

    def post(app: Any, url: str, body: dict[str, Any]) -> None:
        answer = app.test_client().post(url, json=body)
        assert answer.status_code == 200, answer.get_json()
        written.extend(answer.get_json()["write"])

    eligibility = eligibility_app(settings)
    for patient in (realistic_patient(), cazzato_fig5_sirt_77f()):
        post(eligibility, f"/operations/evaluate-eligibility?date={EVALUATION_DATE.isoformat()}", patient)
    response = response_app(settings)
    for criterion in ("recist-1.1", "mrecist", "easl", "choi", "percist", "irecist"):
        post(response, f"/operations/tumor-response?criteria={criterion}", synthetic_follow_up_bundle())
    plan = {"resourceType": "Parameters", "parameter": [
        {"name": "method", "valueCode": "partition"}, {"name": "device", "valueCode": "resin"},
        {"name": "liverVolumeMl", "valueDecimal": 1500}, {"name": "tumorVolumeMl", "valueDecimal": 300},
        {"name": "tumorToNormalRatio", "valueDecimal": 4}, {"name": "lungShuntFraction", "valueDecimal": 0.05},
        {"name": "targetDoseGy", "valueDecimal": 120}, {"name": "normalLiverLimitGy", "valueDecimal": 40}]}
    post(dosimetry_app(settings), "/operations/sirt-activity", plan)
    written.extend(_voxel_results())
    return written


def _voxel_results() -> list[dict[str, Any]]:
    from services.dosimetry.operation import voxel_dosimetry

    study = build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=3)
    params = {"studyInstanceUid": study.study_uid, "administeredActivityGBq": 1.5, "method": "ldm",
              "segmentationSeriesUid": study.seg_series_uid, "patient": "Patient/p1"}
    return voxel_dosimetry(params, "job-1", MemoryDicomweb(study.datasets())).resources


def test_every_written_project_code_is_served_by_the_gateway(served_codes: dict[str, set[str]]) -> None:
    written = _written_by_every_operation()
    used = {(system, code) for system, code in _codings(written) if system.startswith(PROJECT_SYSTEMS)}
    assert {system for system, _ in used} >= {f"{PROJECT_SYSTEMS}observation-code", f"{PROJECT_SYSTEMS}therapy"}
    missing = sorted(f"{system}#{code}" for system, code in used if code not in served_codes.get(system, set()))
    assert missing == []
