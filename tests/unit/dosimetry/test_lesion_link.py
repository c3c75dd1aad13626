"""A lesion's SEG segment is linked to its BodyStructure: by TrackingUID as ``urn:oid:…`` in
``BodyStructure.identifier`` (system ``urn:dicom:uid``), else by the segment label equal to the
BodyStructure id; the voxel result of that lesion then has ``focus`` → the BodyStructure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gateway.dose_records import _search_pages, find_lesion_body_structure
from gateway.store.sql import SqlStore
from services.dosimetry.imaging.phantoms import build_study, two_compartment_liver
from services.dosimetry.operation import voxel_dosimetry
from tests.support.inprocess import gateway_with_services
from tests.support.memory_dicomweb import MemoryDicomweb
from tests.support.rtstruct_builder import ellipsoid_contours, rtstruct

BASE = "http://gateway.test/fhir"
#: TrackingUID of the first tumour's segment (a UID under the DICOM example root 1.2.826.0.1.3680043).
TRACKING_UID = "1.2.826.0.1.3680043.10.99.1"


def _body_structure(bs_id: str, tracking_uid: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "BodyStructure", "id": bs_id, "patient": {"reference": "Patient/p1"},
                           "location": {"text": "liver"}}
    if tracking_uid:
        res["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{tracking_uid}"}]
    return res


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'store.db'}")


def _run(store: SqlStore) -> dict[str, dict[str, Any]]:
    study = build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=7)
    assert study.seg is not None
    segments = {str(s.SegmentLabel): s for s in study.seg.SegmentSequence}
    segments["tumour 1"].TrackingUID = TRACKING_UID
    segments["tumour 2"].SegmentLabel = "lesion-b"  # the label is the BodyStructure id
    params = {"studyInstanceUid": study.study_uid, "administeredActivityGBq": 1.5, "method": "ldm",
              "segmentationSeriesUid": study.seg_series_uid, "patient": "Patient/p1"}
    done = voxel_dosimetry(params, "job-link", MemoryDicomweb(study.datasets()),
                           find_body_structure=lambda uid, label: find_lesion_body_structure(
                               store, uid, label, BASE)["reference"])
    return {o["bodySite"]["text"].split(" (")[0]: o for o in done.resources if o["resourceType"] == "Observation"}


def test_lesions_are_linked_by_tracking_uid_or_by_label(store: SqlStore) -> None:
    store.put(_body_structure("lesion-a", TRACKING_UID))
    store.put(_body_structure("lesion-b"))
    observations = _run(store)
    assert observations["tumour 1"]["focus"] == [{"reference": "BodyStructure/lesion-a"}]
    assert observations["lesion-b"]["focus"] == [{"reference": "BodyStructure/lesion-b"}]
    assert "focus" not in observations["liver"]  # only lesions are linked


def test_two_body_structures_with_one_tracking_uid_link_neither(store: SqlStore) -> None:
    store.put(_body_structure("lesion-a", TRACKING_UID))
    store.put(_body_structure("lesion-a2", TRACKING_UID))
    answer = find_lesion_body_structure(store, TRACKING_UID, "tumour 1", BASE)
    assert answer["reference"] is None and "lesion-a2" in answer["reason"]
    assert "focus" not in _run(store)["tumour 1"]


def test_no_body_structure_no_focus(store: SqlStore) -> None:
    assert find_lesion_body_structure(store, "", "lesion-b", BASE)["reference"] is None
    assert find_lesion_body_structure(store, "", "not an id!", BASE)["reference"] is None


def test_the_internal_lookup_needs_a_known_job(tmp_path: Path) -> None:
    deps, client = gateway_with_services(tmp_path, {})
    resp = client.post("/internal/jobs/unknown/body-structure", json={"worker": "w", "label": "x"},
                       headers={"X-Internal-Token": deps.settings.internal_token})
    assert resp.status_code == 404
    resp = client.post("/internal/jobs/unknown/body-structure", json={"worker": "w", "label": "x"})
    assert resp.status_code in (401, 403)


@pytest.mark.parametrize("page_size", [1, 2, 3, 7])
def test_record_searches_page_to_the_last_match_without_a_count(store: SqlStore, page_size: int) -> None:
    """The dose-record searches ask for no total (``_total=none``) and still read every match,
    page by page: a full page links a next one, the short (or empty) last page ends it."""
    for i in range(6):
        store.put(_body_structure(f"bs{i}", f"1.2.826.0.1.3680043.10.99.{100 + i}"))
    found, _ = _search_pages(store, "BodyStructure", [("patient", "Patient/p1")], BASE, page_size=page_size)
    assert sorted(r["id"] for r in found) == [f"bs{i}" for i in range(6)]
    assert "total" not in store.search("BodyStructure", [("_total", "none")], BASE)


def test_a_segs_lesions_are_looked_up_while_the_job_still_runs(store: SqlStore) -> None:
    """The look-ups start once the SEG is read, not after the dose: each is a round trip to the
    gateway that the job would otherwise wait for at its end."""
    store.put(_body_structure("lesion-a", TRACKING_UID))
    study = build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=7)
    assert study.seg is not None
    for segment in study.seg.SegmentSequence:
        if segment.SegmentLabel == "tumour 1":
            segment.TrackingUID = TRACKING_UID
    stages: list[str] = []
    seen_at_lookup: list[list[str]] = []

    def progress(stage: str, _fraction: float) -> None:
        stages.append(stage)
        if stage == "dvh":
            time.sleep(0.3)  # the look-ups, started earlier, are well under way by now

    def find(uid: str, label: str) -> str | None:
        seen_at_lookup.append(list(stages))
        ref = find_lesion_body_structure(store, uid, label, BASE)["reference"]
        return str(ref) if ref else None

    params = {"studyInstanceUid": study.study_uid, "administeredActivityGBq": 1.5, "method": "ldm",
              "segmentationSeriesUid": study.seg_series_uid, "patient": "Patient/p1"}
    done = voxel_dosimetry(params, "job-early", MemoryDicomweb(study.datasets()), progress=progress,
                           find_body_structure=find)
    assert len(seen_at_lookup) == 2  # both tumours, each once
    assert all("done" not in seen and "store" not in seen for seen in seen_at_lookup)
    linked = [o for o in done.resources if o["resourceType"] == "Observation" and o.get("focus")]
    assert [o["focus"] for o in linked] == [[{"reference": "BodyStructure/lesion-a"}]]


def test_an_rtstructs_lesions_are_looked_up_once_the_job_has_placed_them(store: SqlStore) -> None:
    """An RTSTRUCT's ROIs are placed on the CT's grid after the CT is read: its lesions are looked
    up then (the early look-up is for a SEG), and still linked."""
    store.put(_body_structure("lesion-b"))
    study = build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=7, with_seg=False)
    structures = rtstruct(study.ct, {"Liver": ellipsoid_contours((0.0, 0.0, -120.0), (60.0, 50.0, 50.0)),
                                     "lesion-b": ellipsoid_contours((10.0, 5.0, -120.0), (15.0, 15.0, 15.0))},
                          study.frame_of_reference_uid)
    stages: list[str] = []
    seen_at_lookup: list[list[str]] = []

    def find(uid: str, label: str) -> str | None:
        seen_at_lookup.append(list(stages))
        ref = find_lesion_body_structure(store, uid, label, BASE)["reference"]
        return str(ref) if ref else None

    params = {"studyInstanceUid": study.study_uid, "administeredActivityGBq": 1.5, "method": "ldm",
              "segmentationSeriesUid": str(structures.SeriesInstanceUID), "patient": "Patient/p1"}
    done = voxel_dosimetry(params, "job-rtstruct", MemoryDicomweb([*study.datasets(), structures]),
                           progress=lambda stage, _f: stages.append(stage), find_body_structure=find)
    assert len(seen_at_lookup) == 1 and "done" in seen_at_lookup[0]  # after the job, not during it
    linked = [o for o in done.resources if o["resourceType"] == "Observation" and o.get("focus")]
    assert [o["focus"] for o in linked] == [[{"reference": "BodyStructure/lesion-b"}]]
