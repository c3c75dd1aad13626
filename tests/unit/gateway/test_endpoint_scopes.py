"""Scopes of the gateway's non-REST endpoints under ``AUTH_MODE=jwt`` (contract, "Authentication":
a token whose scopes do not cover the resource types an operation reads or writes gets 403), the
internal token at start, and the 400 of structurally broken bodies (never a 500). CDS Hooks,
authenticated as CDS clients rather than by scopes, is tested in ``test_cds_hooks.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.settings import Settings
from tests.support.jwks import JwksServer

pytestmark = pytest.mark.unit

#: What the Orthanc hook does: records an Endpoint and an ImagingStudy, finds the Patient and the
#: planned activity (Observation), and starts the voxel-dosimetry job (Task, results, Provenance).
HOOK_SCOPES = ("system/ImagingStudy.cru system/Endpoint.cu system/Patient.rs system/Observation.crus "
               "system/Task.cru system/DiagnosticReport.cu system/Provenance.cu")
ORTHANC_STUDY_ID = "27f7126f-4f66a63e-2fa1c4ca-73e1bd2c-3f6ec8d1"
CLOSED_PORT_URL = "http://127.0.0.1:9"  # nothing listens on the discard port


def _bearer(idp: JwksServer, scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.mint(scopes)}"}


def test_the_orthanc_hook_needs_every_scope_of_what_it_writes(jwt_client: FlaskClient, idp: JwksServer) -> None:
    only_imaging = jwt_client.post("/hooks/orthanc/stable-study", json={"ID": ORTHANC_STUDY_ID},
                               headers=_bearer(idp, "system/ImagingStudy.c"))
    assert only_imaging.status_code == 403
    diagnostics = " ".join(i["diagnostics"] for i in only_imaging.get_json()["issue"])
    assert "Task" in diagnostics and "Endpoint" in diagnostics
    # With the scopes the hook gets past authorisation: the PACS (not running) is then a 503.
    full = jwt_client.post("/hooks/orthanc/stable-study", json={"ID": ORTHANC_STUDY_ID}, headers=_bearer(idp, HOOK_SCOPES))
    assert full.status_code == 503 and full.headers.get("Retry-After")


def test_jwt_mode_refuses_to_start_with_the_published_internal_token(tmp_path: Path, idp: JwksServer) -> None:
    # The default INTERNAL_TOKEN is in the repository: with it, anyone could call the internal job
    # endpoints (which write resources) and the PACS hook without a JWT.
    env = {"AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer,
           "AUTH_AUDIENCE": idp.audience, "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
           "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING"}
    for published in (None, Settings.internal_token, "change-me"):
        settings = Settings.from_env(env if published is None else {**env, "INTERNAL_TOKEN": published})
        with pytest.raises(ValueError, match="INTERNAL_TOKEN"):
            create_app(settings)
    # A secret of the deployment's own is accepted, and so is the default with auth off (demo).
    create_app(Settings.from_env({**env, "INTERNAL_TOKEN": "a-long-test-secret-for-the-workers"}))
    create_app(Settings.from_env({**env, "AUTH_MODE": "off"}))


def test_the_catch_up_call_works_with_the_internal_token_alone_in_jwt_mode(jwt_client: FlaskClient, idp: JwksServer) -> None:
    internal = {"X-Internal-Token": "a-long-test-secret-for-the-workers"}
    # Past authentication, the PACS (not running) answers: 503, not a 401 asking for a JWT too.
    resp = jwt_client.post("/hooks/orthanc/catch-up", headers=internal)
    assert resp.status_code == 503, resp.get_json()
    assert jwt_client.post("/hooks/orthanc/catch-up", headers={"X-Internal-Token": "wrong"}).status_code == 401
    # A JWT alone, even with every scope, is not the internal token.
    assert jwt_client.post("/hooks/orthanc/catch-up", headers=_bearer(idp, "system/*.cruds")).status_code == 401


@pytest.mark.parametrize(("path", "body", "expression"), [
    ("/fhir/Patient/p1/$evaluate-eligibility", {"resourceType": "Parameters", "parameter": 5}, "Parameters.parameter"),
    ("/fhir/Patient/p1/$evaluate-eligibility", {"resourceType": "Parameters", "parameter": [5]},
     "Parameters.parameter[0]"),
    ("/fhir/$voxel-dosimetry", {"resourceType": "Parameters", "parameter": {"name": "method"}}, "Parameters.parameter"),
    ("/fhir/$voxel-dosimetry", {"resourceType": "Parameters", "parameter": ["method"]}, "Parameters.parameter[0]"),
])
def test_structurally_broken_bodies_are_400_naming_the_element(jwt_client: FlaskClient, idp: JwksServer, path: str,
                                                              body: dict[str, Any], expression: str) -> None:
    writer = _bearer(idp, "system/*.cruds")
    assert jwt_client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=writer).status_code in (200, 201)
    resp = jwt_client.post(path, json=body, headers=writer)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["issue"][0]["expression"] == [expression]
