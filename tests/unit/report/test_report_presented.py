"""presentedForm: each DiagnosticReport carries its figures (PNG) and itself (PDF), reproducibly."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM
from netliver.report.case import build_case
from netliver.report.plots import figure_specs
from netliver.report.presented import (
    FormContextError,
    context_id,
    draw_form,
    form_ids,
    with_form_links,
    with_presented_forms,
)


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


# -- forms by reference, drawn on first read ---------------------------------------------------

INPUT_MARKER = {"resourceType": "Observation", "id": "cga1", "status": "final", "subject": {"reference": "Patient/p1"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "9811-1"}]},
                "effectiveDateTime": "2026-10-01", "valueQuantity": {"value": 180, "unit": "ug/L"}}


def test_linked_forms_name_a_binary_each_and_hold_no_bytes() -> None:
    out = with_form_links(RESULTS, base_url="https://x.test/fhir")
    forms = out[0]["presentedForm"]
    assert [f["contentType"] for f in forms] == ["text/html", "image/png", "application/pdf"]
    assert [f.get("url") for f in forms[1:]] == ["https://x.test/fhir/Binary/r1-fig-1", "https://x.test/fhir/Binary/r1-pdf"]
    assert all("data" not in f for f in forms[1:]) and forms[1]["title"] and forms[2]["title"].endswith("(PDF)")
    record = out[-1]
    assert record["resourceType"] == "Binary" and record["id"] == "r1-ctx"
    assert record["securityContext"] == {"reference": "DiagnosticReport/r1"}
    assert out[1:-1] == RESULTS[1:] and len(out) == len(RESULTS) + 1
    assert with_form_links(RESULTS) == with_form_links(with_form_links(RESULTS)[:len(RESULTS)])  # idempotent


def test_a_form_drawn_from_its_record_equals_the_one_drawn_at_once() -> None:
    inputs = [INPUT_MARKER]
    drawn = with_presented_forms(RESULTS, inputs)[0]["presentedForm"]
    linked = with_form_links(RESULTS, inputs)
    record = linked[-1]
    ids = [f["url"].rpartition("/")[2] for f in linked[0]["presentedForm"][1:]]
    assert len(ids) == len(drawn) - 1 >= 3  # the DVH, the markers and the PDF
    for form_id, form in zip(ids, drawn[1:], strict=True):
        assert context_id(form_id) == "r1-ctx"
        content_type, data = draw_form(record, form_id)
        assert content_type == form["contentType"] and base64.b64encode(data).decode() == form["data"]
        assert draw_form(record, form_id) == (content_type, data)


def test_an_id_that_is_no_form_of_the_record_is_refused() -> None:
    record = with_form_links(RESULTS)[-1]
    assert context_id("r1-ctx") is None and context_id("whatever") is None
    for wrong in ("r1-fig-9", "r2-pdf", "r1-fig-0"):
        with pytest.raises(FormContextError):
            draw_form(record, wrong)
    with pytest.raises(FormContextError):
        draw_form({"id": "r1-ctx", "data": "bm90IGpzb24="}, "r1-pdf")


def test_a_long_report_id_still_gives_fhir_ids() -> None:
    ids = form_ids("a" * 64, 12)
    assert all(len(i) <= 64 and context_id(i) == ids[0].rpartition("-fig-")[0] + "-ctx" for i in ids)
