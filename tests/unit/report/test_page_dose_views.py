"""Predicted versus delivered dose and the per-lesion dose-response on the page, its figures and
its PDF: every number shown is the stored FHIR value with its unit.

The comparison comes from the dosimetry service's own writer (``$dose-comparison`` result), the
dose-response from ``$tumor-response`` run through the gateway on four lesions with stored doses.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gateway.writeback import tag_results, write_results
from infra.demo_follow_up import PATIENT
from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM
from netliver.report.case import build_case
from netliver.report.pdf import _table_lines
from netliver.report.plots import figure_specs
from services.dosimetry.domain.comparison import StudyDoses, VoiMetrics, compare_doses
from services.dosimetry.fhir_in import ComparisonRequest
from services.dosimetry.fhir_out import comparison_result
from services.response.app import create_app as response_app
from tests.support.inprocess import gateway_with_services
from tests.unit.response.test_dose_response import LESIONS, _course, _dose_observation

BASE = "http://gateway.test/fhir"


def _comparison(patient: str) -> list[dict[str, Any]]:
    """What $dose-comparison writes for an MAA simulation and a Y-90 PET of one patient."""
    predicted = StudyDoses("DiagnosticReport/maa", (VoiMetrics("tumour 1", "tumour", 150.0, 120.0, 80.0, 0.3),
                                                    VoiMetrics("normal liver", "liver", 35.0, 20.0, 2.0, 0.6),
                                                    VoiMetrics("lungs", "lung", 8.0, 4.0, 0.0, 0.1)))
    delivered = StudyDoses("DiagnosticReport/pet", (VoiMetrics("tumour 1", "tumour", 95.5, 70.25, 41.0, 0.2),
                                                    VoiMetrics("normal liver", "liver", 38.0, 22.0, 3.0, 0.7),
                                                    VoiMetrics("lungs", "lung", 6.0, 3.0, 0.0, 0.1)))
    request = ComparisonRequest(predicted, delivered, patient, "maa|pet")
    return comparison_result(compare_doses(predicted, delivered), request, "test")["write"]


def _components(obs: dict[str, Any]) -> dict[str, Any]:
    return {c["code"]["coding"][0]["code"]: c.get("valueQuantity", c.get("valueBoolean")) for c in obs["component"]}


def test_the_case_reads_the_comparison_as_stored() -> None:
    written = _comparison("Patient/p1")
    case = build_case({"resourceType": "Patient", "id": "p1"}, written)
    (comparison,) = case.comparisons
    assert (comparison.predicted, comparison.delivered) == ("DiagnosticReport/maa", "DiagnosticReport/pet")
    by_name = {v.name: v for v in comparison.vois}
    assert set(by_name) == {"tumour 1", "normal liver", "lungs"}
    for obs in (r for r in written if r["resourceType"] == "Observation" and "bodySite" in r):
        row, comps = by_name[obs["bodySite"]["text"].split(" (")[0]], _components(obs)
        assert row.predicted["Dmean"].value == comps["predicted-dose-mean"]["value"]
        assert row.delivered["D70"].value == comps["delivered-dose-d70"]["value"]
        assert row.difference["Dmean"].value == comps["dose-mean-difference"]["value"]
        assert row.predicted["V100"].unit == "%" and row.predicted["Dmean"].unit == "Gy"
        assert row.flagged is comps.get("dose-discrepancy")
    assert by_name["tumour 1"].flagged is True and by_name["normal liver"].flagged is None  # tumours only
    assert comparison.lung_shunt_predicted is not None and comparison.lung_shunt_predicted.unit == "%"
    spec = next(s for s in figure_specs(case) if s.name == "comparison-1")
    assert "tumour 1 predicted 150.0 Gy, delivered 95.5 Gy (tumour dose differs by more than 20 %)" in spec.alt
    assert spec.draw().startswith(b"\x89PNG")
    pdf_lines = "\n".join(_table_lines(case))
    assert "150.0 Gy" in pdf_lines and "95.5 Gy" in pdf_lines and "differs by more than 20 %" in pdf_lines


class _Tables(HTMLParser):
    """Each ``<tr data-…>`` of a table with ``class`` containing ``name``: its data attributes and cells."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.depth, self.rows = name, 0, []  # type: ignore[var-annotated]
        self.row: dict[str, Any] | None = None
        self.cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and self.name in (a.get("class") or "").split():
            self.depth = 1
        elif self.depth and tag == "tr" and a.get("data-resource"):
            self.row = {"attrs": a, "cells": {}}
        elif self.row is not None and tag == "td" and a.get("data-value"):
            self.cell = a["data-value"]
            self.row["cells"][self.cell] = ""

    def handle_data(self, data: str) -> None:
        if self.row is not None and self.cell:
            self.row["cells"][self.cell] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None
        elif tag == "table":
            self.depth = 0


def _rows(html: str, table: str) -> list[dict[str, Any]]:
    parser = _Tables(table)
    parser.feed(html)
    return parser.rows


def _shown(quantity: dict[str, Any], digits: int) -> str:
    return f"{float(quantity['value']):.{digits}f} {quantity['unit']}"


@pytest.fixture
def page(tmp_path: Path) -> tuple[Any, str]:
    deps, client = gateway_with_services(tmp_path, {"response": response_app()})
    client.put(f"/fhir/Patient/{PATIENT}", json={"resourceType": "Patient", "id": PATIENT, "name": [{"text": "Lee Four"}]})
    write_results(deps.store, tag_results([_dose_observation(lid, d, b) for lid, (_, d, b) in LESIONS.items()]), BASE)
    write_results(deps.store, tag_results(_comparison(f"Patient/{PATIENT}")), BASE)
    assert client.post("/fhir/$tumor-response?criteria=recist-1.1", json=_course()).status_code == 200
    resp = client.get(f"/app/patient/{PATIENT}")
    assert resp.status_code == 200
    return deps, resp.get_data(as_text=True)


def test_the_page_shows_the_comparison_with_the_stored_numbers(page: tuple[Any, str]) -> None:
    deps, html = page
    rows = _rows(html, "comparison-table")
    assert len(rows) == 3
    for row in rows:
        comps = _components(deps.store.read(*row["attrs"]["data-resource"].split("/")))
        for shown, code in (("predicted-Dmean", "predicted-dose-mean"), ("delivered-Dmean", "delivered-dose-mean"),
                            ("difference-Dmean", "dose-mean-difference"), ("predicted-D70", "predicted-dose-d70"),
                            ("delivered-V100", "delivered-dose-v100"), ("difference-percent", "dose-mean-difference-percent")):
            assert row["cells"][shown].strip() == _shown(comps[code], 1), (row["attrs"]["data-voi"], shown)
    assert 'id="figure-comparison-1"' in html and "differs by more than 20 %" in html
    assert re.search(r'<img src="[^"]*/figure/comparison-1\.png" alt="Predicted versus delivered[^"]{40,}"', html)


def test_the_page_shows_each_lesions_dose_beside_its_response(page: tuple[Any, str]) -> None:
    deps, html = page
    rows = _rows(html, "dose-response-table")
    assert {r["attrs"]["data-lesion"] for r in rows} == set(LESIONS)
    for row in rows:
        obs = deps.store.read(*row["attrs"]["data-resource"].split("/"))
        comps = _components(obs)
        assert row["cells"]["dose-mean"].strip() == _shown(comps["dose-mean"], 1)
        assert row["cells"]["bed-mean"].strip() == _shown(comps["bed-mean"], 1)
        assert row["cells"]["lesion-baseline-size"].strip() == _shown(comps["lesion-baseline-size"], 0)
        assert row["cells"]["lesion-latest-size"].strip() == _shown(comps["lesion-latest-size"], 0)
        assert row["cells"]["lesion-size-change"].strip() == _shown(comps["lesion-size-change"], 1)
        category = next(c["valueCodeableConcept"]["coding"][0]["code"] for c in obs["component"]
                        if c["code"]["coding"][0]["code"] == "lesion-response")
        assert row["cells"]["lesion-response"].strip() == category
    assert 'id="figure-dose-response-1"' in html and "RECIST 1.1" in html


def test_the_page_says_when_there_is_nothing_to_compare(tmp_path: Path) -> None:
    _, client = gateway_with_services(tmp_path, {"response": response_app()})
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    html = client.get("/app/patient/p1").get_data(as_text=True)
    assert "No predicted-versus-delivered comparison is stored" in html
    assert "No per-lesion dose-response is stored" in html
    assert client.get("/app/patient/p1/figure/comparison-1.png").status_code == 404


def test_the_dose_response_figure_states_each_lesions_numbers(page: tuple[Any, str]) -> None:
    deps, _ = page
    found = deps.store.search("Observation", [("code", f"{OBSERVATION_CODE_SYSTEM}|lesion-dose-response")], BASE)
    resources = [e["resource"] for e in found["entry"]]
    reports = deps.store.search("DiagnosticReport", [("code", f"{OBSERVATION_CODE_SYSTEM}|dose-response-report")], BASE)
    case = build_case({"resourceType": "Patient", "id": PATIENT}, [*resources, *(e["resource"] for e in reports["entry"])])
    spec = next(s for s in figure_specs(case) if s.name == "dose-response-1")
    for lesion_id, (_, dose, _) in LESIONS.items():
        assert f"{lesion_id} {dose:.1f} Gy," in spec.alt
    assert "-100.0 %" in spec.alt and "+25.0 %" in spec.alt
