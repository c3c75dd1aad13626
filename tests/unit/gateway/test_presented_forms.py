"""A report's presented forms (figures as PNG, itself as PDF) are named by url when the report
is written and drawn on their first ``GET /fhir/Binary/<id>``: the operation's write waits for
no drawing, and EHRs still get the very bytes drawing them at once gives."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.deps import GatewayDeps
from gateway.writeback import tag_results, write_results
from infra.demo_follow_up import synthetic_follow_up_bundle
from netliver.fhir.outcome import FhirError
from netliver.report.presented import with_form_links, with_presented_forms
from services.response.app import create_app as response_app
from tests.support.inprocess import gateway_with_services
from tests.support.jwks import JwksServer

pytestmark = pytest.mark.unit

BASE = "http://localhost/fhir"


def _stored(deps: GatewayDeps, rtype: str) -> list[dict[str, Any]]:
    found = deps.store.search(rtype, [("_count", "500")], BASE)
    return [e["resource"] for e in found.get("entry", [])]


def _exists(deps: GatewayDeps, rtype: str, rid: str) -> bool:
    try:
        deps.store.read(rtype, rid)
    except FhirError as err:
        assert err.status == 404
        return False
    return True


@pytest.fixture
def responded(tmp_path: Path) -> tuple[GatewayDeps, FlaskClient, list[dict[str, Any]]]:
    deps, client = gateway_with_services(tmp_path, {"response": response_app()})
    bundle = synthetic_follow_up_bundle()
    resp = client.post("/fhir/$tumor-response", json=bundle)
    assert resp.status_code == 200, resp.get_json()
    return deps, client, [e["resource"] for e in bundle["entry"]]


def _drawn_forms(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report.get("presentedForm", []) if f["contentType"] in ("image/png", "application/pdf")]


def test_the_operation_writes_forms_by_url_and_draws_none(responded: Any) -> None:
    deps, _, _ = responded
    reports = _stored(deps, "DiagnosticReport")
    assert reports
    for report in reports:
        forms = _drawn_forms(report)
        assert forms and forms[-1]["contentType"] == "application/pdf"
        for form in forms:
            assert "data" not in form and form["title"] and form["url"].startswith("Binary/")
            assert not _exists(deps, "Binary", form["url"].removeprefix("Binary/"))  # drawn on read only
        assert _exists(deps, "Binary", f"{report['id']}-ctx")
    titles = {f["title"] for r in reports for f in _drawn_forms(r)}
    assert {"Waterfall plot", "Spider plot"} <= titles


def test_a_form_read_gives_the_bytes_drawing_at_once_gives_and_the_same_again(responded: Any) -> None:
    deps, client, inputs = responded
    results = [r for t in ("Observation", "BodyStructure") for r in _stored(deps, t)]
    for report in _stored(deps, "DiagnosticReport"):
        expected = _drawn_forms(with_presented_forms([report, *results], inputs)[0])
        linked = _drawn_forms(report)
        assert [f["contentType"] for f in linked] == [f["contentType"] for f in expected]
        for link, form in zip(linked, expected, strict=True):
            first = client.get(f"/fhir/{link['url']}", headers={"Accept": form["contentType"]})
            assert first.status_code == 200 and first.mimetype == form["contentType"]
            assert first.data == base64.b64decode(form["data"])
            binary_id = link["url"].removeprefix("Binary/")
            assert _exists(deps, "Binary", binary_id)  # stored: the next read is a plain read
            again = client.get(f"/fhir/{link['url']}")
            assert again.data == first.data
            resource = client.get(f"/fhir/{link['url']}", headers={"Accept": "application/fhir+json"}).get_json()
            assert resource["resourceType"] == "Binary" and resource["contentType"] == form["contentType"]
            assert resource["data"] == form["data"]
            assert resource["securityContext"] == {"reference": f"DiagnosticReport/{report['id']}"}


def test_a_report_written_again_with_other_results_gets_its_forms_drawn_again(responded: Any) -> None:
    deps, client, _ = responded
    report = next(r for r in _stored(deps, "DiagnosticReport") if len(_drawn_forms(r)) > 1)
    url = _drawn_forms(report)[-1]["url"]
    before = client.get(f"/fhir/{url}").data
    changed = {**report, "code": {"text": "Renamed report"}}
    results = [r for t in ("Observation", "BodyStructure") for r in _stored(deps, t)]
    write_results(deps.store, tag_results(with_form_links([changed, *results])), BASE)
    after = client.get(f"/fhir/{url}").data
    assert after != before and after.startswith(b"%PDF-")
    assert after == base64.b64decode(_drawn_forms(with_presented_forms([changed, *results])[0])[-1]["data"])


@pytest.mark.parametrize("binary_id", ["nothing-here", "nothing-pdf", "nothing-fig-2"])
def test_an_unknown_binary_is_a_404_outcome(responded: Any, binary_id: str) -> None:
    _, client, _ = responded
    resp = client.get(f"/fhir/Binary/{binary_id}")
    assert resp.status_code == 404 and resp.get_json()["resourceType"] == "OperationOutcome"


def test_a_figure_the_report_does_not_have_is_a_404(responded: Any) -> None:
    deps, client, _ = responded
    report = _stored(deps, "DiagnosticReport")[0]
    resp = client.get(f"/fhir/Binary/{report['id']}-fig-{len(_drawn_forms(report)) + 5}")
    assert resp.status_code == 404 and resp.get_json()["resourceType"] == "OperationOutcome"


def test_an_accept_of_neither_fhir_json_nor_the_content_type_is_a_406(responded: Any) -> None:
    deps, client, _ = responded
    url = _drawn_forms(_stored(deps, "DiagnosticReport")[0])[-1]["url"]
    resp = client.get(f"/fhir/{url}", headers={"Accept": "application/fhir+xml"})
    assert resp.status_code == 406 and resp.get_json()["issue"][0]["expression"] == ["Accept"]
    assert client.get(f"/fhir/{url}?_format=xml").status_code == 406
    assert client.get(f"/fhir/{url}?_format=json").get_json()["resourceType"] == "Binary"


REPORT = {"resourceType": "DiagnosticReport", "id": "scoped", "status": "final", "subject": {"reference": "Patient/p1"},
          "code": {"text": "Eligibility summary"}}


RESULT = {"resourceType": "Observation", "id": "scoped-o", "status": "final", "subject": {"reference": "Patient/p1"},
          "code": {"text": "A result"}, "valueString": "x"}


def test_reading_a_form_needs_the_binary_and_the_report_scopes(jwt_client: FlaskClient, idp: JwksServer) -> None:
    store = jwt_client.application.extensions["netliver"]["store"]
    write_results(store, tag_results(with_form_links([REPORT, RESULT])), BASE)

    def get(scopes: str | None, form: str = "pdf") -> int:
        headers = {"Authorization": f"Bearer {idp.mint(scopes)}"} if scopes is not None else {}
        return jwt_client.get(f"/fhir/Binary/scoped-{form}", headers=headers).status_code

    # the record the forms are drawn from holds the results: their scopes are needed too
    assert get("system/Binary.r system/DiagnosticReport.r", "ctx") == 403
    assert get("system/Binary.r system/DiagnosticReport.r system/Observation.r", "ctx") == 200

    assert get(None) == 401
    assert get("system/DiagnosticReport.rs") == 403
    assert get("system/Binary.r") == 403  # the Binary's securityContext is the report
    assert not _exists_in(store, "scoped-pdf")  # nothing was drawn for a caller refused
    assert get("system/Binary.r system/DiagnosticReport.r") == 200
    assert get("system/Binary.r") == 403  # stored now, and still the report's to read


def _exists_in(store: Any, rid: str) -> bool:
    try:
        store.read("Binary", rid)
    except FhirError:
        return False
    return True


def test_the_audit_trail_names_the_patient_whose_form_was_read(responded: Any) -> None:
    deps, client, _ = responded
    report = _stored(deps, "DiagnosticReport")[0]
    url = _drawn_forms(report)[-1]["url"]
    assert client.get(f"/fhir/{url}").status_code == 200
    patient = report["subject"]["reference"]
    trail = client.get(f"/fhir/$audit-trail?patient={patient}").get_json()
    entities = [e["what"].get("reference", "") for entry in trail.get("entry", [])
                for e in entry["resource"].get("entity", [])]
    assert any(ref.startswith(f"Binary/{url.removeprefix('Binary/')}") or ref.endswith(url) for ref in entities), entities


def test_a_patient_confined_token_reads_the_forms_of_its_patient_only(jwt_client: FlaskClient, idp: JwksServer) -> None:
    store = jwt_client.application.extensions["netliver"]["store"]
    other = {**REPORT, "id": "other", "subject": {"reference": "Patient/p2"}}
    write_results(store, tag_results(with_form_links([REPORT, RESULT])), BASE)
    write_results(store, tag_results(with_form_links([other])), BASE)

    def get(binary_id: str, patient: str) -> int:
        token = idp.mint("patient/Binary.r patient/DiagnosticReport.r patient/Observation.r", patient=patient)
        return jwt_client.get(f"/fhir/Binary/{binary_id}", headers={"Authorization": f"Bearer {token}"}).status_code

    assert get("other-pdf", "p1") == 403
    assert not _exists_in(store, "other-pdf")  # nothing drawn for a report of another patient
    assert get("scoped-pdf", "p1") == 200 and get("scoped-ctx", "p1") == 200
    assert get("scoped-pdf", "p2") == 403 and get("scoped-ctx", "p2") == 403
    assert get("other-pdf", "p2") == 200
