"""presentedForm: each DiagnosticReport carries its figures (PNG) and itself (PDF), reproducibly."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM
from netliver.report.case import build_case
from netliver.report.plots import figure_specs
from netliver.report.presented import with_presented_forms


def _voi(obs_id: str, name: str, dmean: float, d90: float) -> dict[str, Any]:
    def metric(code: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": code}]},
                "valueQuantity": {"value": value, "unit": "Gy"}}
    return {"resourceType": "Observation", "id": obs_id, "code": {"text": f"Absorbed dose in {name}"},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": dmean, "unit": "Gy"},
            "component": [metric("dose-mean", dmean), metric("dose-d90", d90), metric("dose-min", d90 - 5)]}


REPORT = {"resourceType": "DiagnosticReport", "id": "r1", "status": "final", "subject": {"reference": "Patient/p1"},
          "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "voxel-dosimetry-report",
                               "display": "Voxel dosimetry report"}]},
          "effectiveDateTime": "2026-12-02T10:00:00Z",
          "result": [{"reference": "Observation/v1"}, {"reference": "Observation/v2"}],
          "presentedForm": [{"contentType": "text/html", "data": "PHA+PC9wPg=="}]}
RESULTS = [REPORT, _voi("v1", "liver", 37.9, 34.6), _voi("v2", "tumour 1", 138.9, 138.3), {"resourceType": "Provenance", "id": "p"}]


def test_the_report_gets_its_dvh_as_png_and_itself_as_pdf_other_forms_kept() -> None:
    out = with_presented_forms(RESULTS)
    forms = out[0]["presentedForm"]
    assert [f["contentType"] for f in forms] == ["text/html", "image/png", "application/pdf"]
    png = base64.b64decode(forms[1]["data"])
    expected = figure_specs(build_case({"resourceType": "Patient", "id": "p1"}, RESULTS))[0].draw()
    assert png == expected and forms[1]["size"] == len(png)
    assert forms[1]["hash"] == base64.b64encode(hashlib.sha1(png).digest()).decode()
    assert base64.b64decode(forms[2]["data"]).startswith(b"%PDF-")
    assert out[1:] == RESULTS[1:] and "presentedForm" not in out[1]
    assert RESULTS[0]["presentedForm"] == [{"contentType": "text/html", "data": "PHA+PC9wPg=="}]  # input untouched


def test_the_forms_are_reproducible_so_a_repeated_request_writes_the_same_report() -> None:
    assert with_presented_forms(RESULTS) == with_presented_forms(RESULTS)
    again = with_presented_forms(with_presented_forms(RESULTS))
    assert [f["contentType"] for f in again[0]["presentedForm"]] == ["text/html", "image/png", "application/pdf"]


def test_a_report_without_figures_still_gets_its_pdf() -> None:
    report = {"resourceType": "DiagnosticReport", "id": "e", "subject": {"reference": "Patient/p1"},
              "code": {"text": "Eligibility summary"}}
    (out,) = with_presented_forms([report])
    assert [f["contentType"] for f in out["presentedForm"]] == ["application/pdf"]
    assert out["presentedForm"][0]["title"] == "Eligibility summary (PDF)"
