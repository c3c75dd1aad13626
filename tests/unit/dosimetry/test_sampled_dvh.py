"""The sampled cumulative DVH: computed per VOI by the voxel job, stored with its DiagnosticReport
(``presentedForm``, text/csv), kept when the gateway adds the figures, and drawn whole on the page."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from netliver.fhir.sampled_dvh import DVH_CSV_TYPE, dvh_csv, read_dvh_csv, report_dvh
from netliver.report.case import build_case
from netliver.report.plots import figure_specs
from netliver.report.presented import with_presented_forms
from services.dosimetry.domain.dvh import dvh_metrics, sampled_dvh
from services.dosimetry.fhir_in import voxel_job_request
from services.dosimetry.fhir_out import voxel_results
from services.dosimetry.imaging.phantoms import build_study, lung_shunt
from services.dosimetry.imaging.pipeline import VoxelDosimetryResult, run_voxel_dosimetry
from tests.support.memory_dicomweb import MemoryDicomweb


def test_the_sampled_dvh_is_dx_at_every_percent_through_the_reported_points() -> None:
    dose = np.arange(1.0, 201.0).reshape(2, 10, 10)  # 200 voxels, 1 … 200 Gy
    mask = np.ones_like(dose, dtype=bool)
    mask[0, 0, :5] = False  # 195 voxels, 6 … 200 Gy
    curve = sampled_dvh(dose, mask)
    assert [v for v, _ in curve] == list(range(101))
    metrics = dvh_metrics(dose, mask)
    by_volume = dict(curve)
    assert by_volume[0] == metrics["Dmax"] == 200.0 and by_volume[100] == metrics["Dmin"] == 6.0
    for x in (50, 70, 90):
        assert by_volume[x] == metrics[f"D{x}"]
    # the hottest 10 % are the ⌈19.5⌉ = 20 hottest voxels: 181 … 200 Gy, so D10 = 181 Gy, D11 = 179 Gy (⌈21.45⌉ = 22)
    assert by_volume[10] == 181.0 and by_volume[11] == 179.0
    doses = [d for _, d in curve]
    assert doses == sorted(doses, reverse=True)  # never rises with the volume


def test_the_csv_reads_back_and_anything_else_reads_as_none() -> None:
    curves = [("tumour 1", "tumour", ((0.0, 250.5), (50.0, 120.25), (100.0, 40.0))),
              ("lungs", "lung", ((0.0, 9.0), (100.0, 0.5)))]
    back = read_dvh_csv(dvh_csv(curves))
    assert back == {"tumour 1": ((0.0, 250.5), (50.0, 120.25), (100.0, 40.0)), "lungs": ((0.0, 9.0), (100.0, 0.5))}
    assert read_dvh_csv(b"a,b\n1,2\n") == {}
    assert read_dvh_csv(b"voi,role,volume_percent,dose_gy\nx,y,not-a-number,1\n") == {}
    assert read_dvh_csv(b"\xff\xfe") == {}
    assert report_dvh({"presentedForm": [{"contentType": DVH_CSV_TYPE, "data": "!!not base64!!"}]}) == {}


@pytest.fixture(scope="module")
def voxel() -> tuple[VoxelDosimetryResult, list[dict[str, Any]]]:
    study = build_study(lung_shunt(n=16, voxel_mm=13.26, nuclide="Y-90"), "PT", seed=5)
    result = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 2.0, "ldm",
                                 study.seg_series_uid, store=False)
    request = voxel_job_request({"studyInstanceUid": study.study_uid, "administeredActivityGBq": 2.0,
                                 "method": "ldm", "segmentationSeriesUid": study.seg_series_uid, "patient": "Patient/p1"})
    return result, voxel_results(result, request, "job-dvh", "test").resources


def _report(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in resources if r["resourceType"] == "DiagnosticReport")


def test_the_voxel_report_carries_each_vois_sampled_dvh(voxel: tuple[VoxelDosimetryResult, list[dict[str, Any]]]) -> None:
    result, resources = voxel
    report = _report(resources)
    (form,) = report["presentedForm"]
    assert form["contentType"] == "text/csv" and form["size"] == len(base64.b64decode(form["data"]))
    curves = report_dvh(report)
    assert set(curves) == {v.name for v in result.vois} and len(result.vois) >= 3
    observations = {o["code"]["text"].removeprefix("Absorbed dose in "): o for o in resources
                    if o["resourceType"] == "Observation"}
    for voi in result.vois:
        assert len(curves[voi.name]) == 101
        by_volume = dict(curves[voi.name])
        stored = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"]
                  for c in observations[voi.name]["component"] if "valueQuantity" in c and c["code"].get("coding")}
        for x in (50, 70, 90):  # the curve passes through the reported Dx (both to 0.1 mGy)
            assert by_volume[x] == pytest.approx(voi.metrics[f"D{x}"], abs=1e-4)
            assert by_volume[x] == pytest.approx(stored[f"dose-d{x}"], abs=1e-3)


def test_the_gateway_keeps_the_csv_beside_the_figures_and_the_page_draws_the_curve(
        voxel: tuple[VoxelDosimetryResult, list[dict[str, Any]]]) -> None:
    _, resources = voxel
    written = with_presented_forms(resources)
    forms = _report(written)["presentedForm"]
    assert [f["contentType"] for f in forms] == ["text/csv", "image/png", "application/pdf"]
    case = build_case({"resourceType": "Patient", "id": "p1"}, written)
    (report,) = case.doses
    assert set(report.curves) == {v.name for v in report.vois}
    rows = report.curve_rows()
    assert [level for level, _ in rows] == [float(x) for x in range(0, 101, 5)]
    assert rows[10][1] == [dict(report.curves[name])[50.0] for name in report.curves]
    spec = next(s for s in figure_specs(case) if s.name == "dvh-1")
    assert "sampled DVH stored with the report" in spec.alt
    without = build_case({"resourceType": "Patient", "id": "p1"},
                         [{**r, "presentedForm": []} if r["resourceType"] == "DiagnosticReport" else r for r in written])
    plain = next(s for s in figure_specs(without) if s.name == "dvh-1")
    assert "reported DVH points" in plain.alt and plain.draw() != spec.draw()
