"""The page's dose map: the voxel job's RT Dose over the CT with the SEG's contours, fetched over
DICOMweb (an in-memory PACS holding a simulated study and the RT Dose the real pipeline stored),
the slice chosen with a query parameter and no JavaScript, its numbers equal to the RT Dose's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.webapp import DICOMWEB_EXTENSION
from gateway.writeback import tag_results, write_results
from netliver.fhir.builders import imaging_study_id
from netliver.settings import Settings
from services.dosimetry.fhir_in import voxel_job_request
from services.dosimetry.fhir_out import voxel_results
from services.dosimetry.imaging.phantoms import build_study, lung_shunt
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from tests.support.memory_dicomweb import MemoryDicomweb

BASE = "http://localhost/fhir"


@pytest.fixture(scope="module")
def pacs() -> tuple[Any, Any, MemoryDicomweb]:
    study = build_study(lung_shunt(n=16, voxel_mm=13.26, nuclide="Y-90"), "PT", seed=7)
    client = MemoryDicomweb(study.datasets())
    result = run_voxel_dosimetry(client, study.study_uid, 2.0, "ldm", study.seg_series_uid, store=True)
    assert result.rtdose_sop_instance_uid and client.stored
    return study, result, MemoryDicomweb([*study.datasets(), *client.stored])


@pytest.fixture
def page(tmp_path: Path, pacs: tuple[Any, Any, MemoryDicomweb]) -> Iterator[tuple[FlaskClient, Any]]:
    study, result, memory = pacs
    app = create_app(Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "ORTHANC_URL": "http://127.0.0.1:9",
        "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING"}))
    app.extensions[DICOMWEB_EXTENSION] = memory
    deps = app.extensions["netliver"]["deps"]
    study_id = imaging_study_id(study.study_uid)
    write_results(deps.store, [
        {"resourceType": "Patient", "id": "p1", "name": [{"text": "Ada Example"}]},
        {"resourceType": "ImagingStudy", "id": study_id, "status": "available", "subject": {"reference": "Patient/p1"},
         "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.study_uid}"}]}], BASE)
    request = voxel_job_request({"studyInstanceUid": study.study_uid, "administeredActivityGBq": 2.0, "method": "ldm",
                                 "segmentationSeriesUid": study.seg_series_uid, "patient": "Patient/p1",
                                 "imagingStudy": f"ImagingStudy/{study_id}"})
    write_results(deps.store, tag_results(voxel_results(result, request, "job-map", "test").resources), BASE)
    yield app.test_client(), memory


def _rtdose(memory: MemoryDicomweb) -> Any:
    """The absorbed-dose RT Dose (the job may store a BED map as a second RT Dose)."""
    return next(ds for ds in memory.datasets if ds.Modality == "RTDOSE" and ds.get("DoseType") != "EFFECTIVE")


def test_the_pacs_holds_the_dose_and_the_bed_map_and_the_page_reads_the_dose(
        pacs: tuple[Any, Any, MemoryDicomweb]) -> None:
    _, result, memory = pacs
    doses = [ds for ds in memory.datasets if ds.Modality == "RTDOSE"]
    assert str(_rtdose(memory).SOPInstanceUID) == result.rtdose_sop_instance_uid
    assert len(doses) == 1 + bool(result.bed_map_sop_instance_uid)


def _cells(html: str) -> dict[str, str]:
    table = html[html.index('class="data dose-map-table"'):]
    table = table[:table.index("</table>")]
    return {m[0]: re.sub(r"\s+", " ", m[1]).strip() for m in re.findall(r'data-value="([^"]+)">([^<]*)<', table)}


def test_the_page_shows_the_slice_of_the_highest_dose_with_its_numbers(page: tuple[FlaskClient, Any]) -> None:
    client, memory = page
    html = client.get("/app/patient/p1").get_data(as_text=True)
    assert "<script" not in html
    rtdose = _rtdose(memory)
    dose = np.asarray(rtdose.pixel_array, dtype=float) * float(rtdose.DoseGridScaling)
    peak = int(np.argmax(dose.reshape(dose.shape[0], -1).max(axis=1)))
    z = float(rtdose.ImagePositionPatient[2]) + float(rtdose.GridFrameOffsetVector[peak])
    cells = _cells(html)
    assert cells["slice"] == f"{peak + 1} of {dose.shape[0]}"  # of the absorbed dose, not of the BED map
    assert cells["z"] == f"{z:.1f} mm" and cells["max"] == f"{dose[peak].max():.1f} Gy"
    assert "tumour" in cells["segments"]  # the hottest slice crosses the tumour's contour
    img = re.search(r'<img src="([^"]*/dose-map/1\.png\?slice=(\d+))" alt="([^"]+)"', html)
    assert img and int(img[2]) == peak + 1 and f"{dose[peak].max():.1f} Gy" in img[3]
    png = client.get(img[1].replace("&amp;", "&"))
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    assert re.search(r'<form method="get" action="#dose-map-1"', html) and 'name="slice1"' in html


def test_another_slice_is_chosen_by_query_parameter(page: tuple[FlaskClient, Any]) -> None:
    client, memory = page
    rtdose = _rtdose(memory)
    dose = np.asarray(rtdose.pixel_array, dtype=float) * float(rtdose.DoseGridScaling)
    cells = _cells(client.get("/app/patient/p1?slice1=1").get_data(as_text=True))
    assert cells["slice"] == f"1 of {dose.shape[0]}" and cells["max"] == f"{dose[0].max():.1f} Gy"
    first = client.get("/app/patient/p1/dose-map/1.png?slice=1").data
    last = client.get(f"/app/patient/p1/dose-map/1.png?slice={dose.shape[0]}").data
    assert first != last
    # out of range: the page says so and shows the default; the figure is a 400 naming the parameter
    html = client.get("/app/patient/p1?slice1=999").get_data(as_text=True)
    assert "is not between 1 and" in html
    bad = client.get("/app/patient/p1/dose-map/1.png?slice=0")
    assert bad.status_code == 400 and bad.get_json()["issue"][0]["expression"] == ["slice"]
    assert client.get("/app/patient/p1/dose-map/2.png").status_code == 404


def test_without_the_pacs_the_page_says_why_and_still_renders(page: tuple[FlaskClient, Any], tmp_path: Path) -> None:
    client, _ = page
    client.application.extensions[DICOMWEB_EXTENSION] = MemoryDicomweb([])  # the PACS lost the study
    html = client.get("/app/patient/p1").get_data(as_text=True)
    assert "No dose map: the PACS holds no RT Dose" in html and "Ada Example" in html
    assert client.get("/app/patient/p1/dose-map/1.png").status_code == 404


class _DownPacs:
    """A PACS that refuses every connection, counting the attempts."""

    def __init__(self) -> None:
        self.calls = 0

    def search_for_series(self, study_instance_uid: str, fields: Any = None,
                          search_filters: Any = None) -> list[dict[str, Any]]:
        self.calls += 1
        raise requests.ConnectionError("connection refused")

    def search_for_instances(self, study_instance_uid: str, fields: Any = None,
                             search_filters: Any = None) -> list[dict[str, Any]]:
        self.calls += 1
        raise requests.ConnectionError("connection refused")


def test_a_pacs_that_does_not_answer_is_named_and_not_asked_at_every_render(page: tuple[FlaskClient, Any]) -> None:
    client, _ = page
    down = _DownPacs()
    client.application.extensions[DICOMWEB_EXTENSION] = down
    html = client.get("/app/patient/p1").get_data(as_text=True)
    assert "No dose map: the PACS" in html and "did not answer: ConnectionError" in html
    assert client.get("/app/patient/p1").status_code == 200
    assert down.calls == 1  # the second render did not wait for it again


class _Counting:
    """A PACS that counts what is retrieved: series by modality, series headers, single instances."""

    def __init__(self, inner: MemoryDicomweb) -> None:
        self.inner, self.retrieved = inner, []  # type: ignore[var-annotated]
        self.instances: list[str] = []

    def search_for_series(self, study_instance_uid: str, fields: Any = None,
                          search_filters: Any = None) -> list[dict[str, Any]]:
        return self.inner.search_for_series(study_instance_uid, search_filters=search_filters)

    def search_for_instances(self, study_instance_uid: str, fields: Any = None,
                             search_filters: Any = None) -> list[dict[str, Any]]:
        return self.inner.search_for_instances(study_instance_uid, search_filters=search_filters)

    def retrieve_series(self, study_uid: str, series_uid: str, media_types: Any = None) -> list[Any]:
        found = self.inner.retrieve_series(study_uid, series_uid)
        self.retrieved.append(found[0].Modality)
        return found

    def retrieve_series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        found = self.inner.retrieve_series_metadata(study_uid, series_uid)
        self.retrieved.append("metadata")
        return found

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str, media_types: Any = None) -> Any:
        found = self.inner.retrieve_instance(study_uid, series_uid, sop_uid)
        self.instances.append(f"{found.Modality} z={float(found.ImagePositionPatient[2]):g}")
        return found


def test_the_page_reads_the_dose_and_seg_and_the_figure_only_the_ct_slice_it_draws(
        page: tuple[FlaskClient, Any]) -> None:
    client, memory = page
    counting = _Counting(memory)
    client.application.extensions[DICOMWEB_EXTENSION] = counting
    assert client.get("/app/patient/p1").status_code == 200
    # the SEG series, and of the RT Doses only the instance the report names
    assert counting.retrieved == ["SEG"]
    dose = _rtdose(memory)
    assert counting.instances == [f"RTDOSE z={float(dose.ImagePositionPatient[2]):g}"]
    counting.instances.clear()
    before = len(counting.retrieved)
    assert client.get("/app/patient/p1/dose-map/1.png?slice=2").status_code == 200
    # the CT series' headers once, then the one instance the slice needs; never the whole series
    assert counting.retrieved[before:] == ["metadata"] and len(counting.instances) == 1
    dose_z = _rtdose(memory).ImagePositionPatient[2] + _rtdose(memory).GridFrameOffsetVector[1]
    cts = [float(ds.ImagePositionPatient[2]) for ds in memory.datasets if ds.Modality == "CT"]
    assert counting.instances[0] == f"CT z={min(cts, key=lambda z: abs(z - float(dose_z))):g}"
    assert client.get("/app/patient/p1/dose-map/1.png?slice=3").status_code == 200
    assert len(counting.instances) == 2 and counting.instances[1] != counting.instances[0]
    assert client.get("/app/patient/p1/dose-map/1.png?slice=3").status_code == 200
    assert client.get("/app/patient/p1?slice1=3").status_code == 200
    # the same slice and the page again come from what was fetched
    assert counting.retrieved[before:] == ["metadata"] and len(counting.instances) == 2


class _Store:
    """The two reads :meth:`DoseMapSource.locate` makes."""

    def __init__(self, provenance: dict[str, Any], study: dict[str, Any]) -> None:
        self.provenance, self.study = provenance, study

    def search(self, rtype: str, params: list[tuple[str, str]], base: str) -> dict[str, Any]:
        return {"entry": [{"resource": self.provenance}]}

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        return self.study


def _derived(uid: str) -> dict[str, Any]:
    return {"role": "derivation", "what": {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}}}


def test_the_dose_map_is_the_absorbed_dose_not_the_bed_map_the_report_also_names() -> None:
    from gateway.webapp.dose_map import DoseMapSource

    study = {"resourceType": "ImagingStudy", "id": "s", "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}]}
    provenance = {"resourceType": "Provenance", "entity": [
        {"role": "source", "what": {"identifier": {"system": "urn:dicom:uid", "value": "urn:oid:9.9"}}},
        _derived("1.2.3.4.bed"), _derived("1.2.3.4.dose")]}
    report = {"resourceType": "DiagnosticReport", "id": "r", "imagingStudy": [{"reference": "ImagingStudy/s"}],
              "extension": [{"url": "https://netliver.org/fhir/StructureDefinition/bed-map",
                             "valueIdentifier": {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4.bed"}}]}
    source = DoseMapSource(Settings())
    assert source.locate(_Store(provenance, study), BASE, report) == ("1.2.3", "1.2.3.4.dose")
    # without the report naming it, the first derivation is taken; a source entity never is
    assert source.locate(_Store(provenance, study), BASE, {**report, "extension": []}) == ("1.2.3", "1.2.3.4.bed")


def test_other_jobs_rt_doses_in_the_study_are_not_retrieved(page: tuple[FlaskClient, Any]) -> None:
    """Each job adds an RT Dose series to the study: the page asks for the one its report names
    by SOP Instance UID and reads no other (it read every RT Dose series until it met it)."""
    from copy import deepcopy

    from pydicom.uid import generate_uid

    client, memory = page
    others = []
    for n in range(3):  # three earlier jobs' RT Doses, listed before the one the report names
        other = deepcopy(_rtdose(memory))
        other.SeriesInstanceUID, other.SOPInstanceUID = generate_uid(), generate_uid()
        other.SeriesNumber = 100 + n
        others.append(other)
    counting = _Counting(MemoryDicomweb([*others, *memory.datasets]))
    client.application.extensions[DICOMWEB_EXTENSION] = counting
    assert client.get("/app/patient/p1").status_code == 200
    assert "RTDOSE" not in counting.retrieved and len(counting.instances) == 1
    assert counting.inner.searches[0] == {"SOPInstanceUID": str(_rtdose(memory).SOPInstanceUID)}
