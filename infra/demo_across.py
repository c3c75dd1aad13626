"""The studies of a patient across treatments, for ``make demo`` and the end-to-end tests.

A Tc-99m MAA SPECT/CT (the simulation of the plan) and a post-SIRT Y-90 PET/CT of one liver
with four lesions under two lungs (:func:`~services.dosimetry.imaging.phantoms.four_lesion_liver`),
each with a DICOM SEG whose lesion segments carry the lesions' TrackingUIDs. The MAA showed the
first lesions hotter and more lung shunt than the microspheres then gave: the comparison of
predicted and delivered dose has something to find.

Uploads put the CT and the SEG in the PACS before the emission series, so once the emission
series is complete (the stable-study hook waits for that) the SEG is there too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from services.dosimetry.imaging import phantoms as ph

__all__ = ["MAA_LESION_COUNTS", "MAA_LUNG_COUNTS", "PET_LESION_COUNTS", "PET_LUNG_COUNTS", "across_studies",
           "upload_emission_last", "wait_for_job"]

#: Counts per voxel of the four lesions (normal liver: 100) and of the lungs, MAA and Y-90 PET.
MAA_LESION_COUNTS = (500, 150, 120, 100)
PET_LESION_COUNTS = (400, 200, 120, 60)
MAA_LUNG_COUNTS, PET_LUNG_COUNTS = 15, 10


def _tracked(study: ph.PhantomStudy, tracking_uids: Mapping[str, str]) -> ph.PhantomStudy:
    """``study`` with each named segment's TrackingUID (0062,0021) set: the lesion across studies."""
    assert study.seg is not None
    for item in study.seg.SegmentSequence:
        uid = tracking_uids.get(str(item.SegmentLabel))
        if uid:
            item.TrackingID = str(item.SegmentLabel)
            item.TrackingUID = uid
    return study


def across_studies(dicom_patient_id: str, labels: Sequence[str], tracking_uids: Mapping[str, str],
                   n: int = 48, delivered_gbq: float = 0.6) -> tuple[ph.PhantomStudy, ph.PhantomStudy]:
    """(MAA SPECT/CT, Y-90 PET/CT) of one patient: lesions named ``labels`` in their SEGs; the
    PET header records ``delivered_gbq`` GBq administered."""
    maa = ph.build_study(ph.four_lesion_liver(n=n, lesion_counts=MAA_LESION_COUNTS, lung_counts_per_voxel=MAA_LUNG_COUNTS,
                                              nuclide="Tc-99m", lesion_labels=labels),
                         "NM", seed=21, patient_id=dicom_patient_id)
    pet = ph.build_study(ph.four_lesion_liver(n=n, lesion_counts=PET_LESION_COUNTS, lung_counts_per_voxel=PET_LUNG_COUNTS,
                                              lesion_labels=labels),
                         "PT", seed=22, total_activity_gbq=delivered_gbq, patient_id=dicom_patient_id)
    return _tracked(maa, tracking_uids), _tracked(pet, tracking_uids)


def upload_emission_last(orthanc_url: str, study: ph.PhantomStudy) -> str:
    """CT, SEG, then the emission series; the Orthanc study id."""
    answers = ph.upload_datasets(orthanc_url, [*study.ct, *([study.seg] if study.seg is not None else []),
                                               *study.activity])
    return str(answers[-1]["ParentStudy"])


def wait_for_job(fhir_base: str, study: ph.PhantomStudy, timeout_s: float = 300) -> dict[str, Any]:
    """The finished Task of the PACS-triggered job that read ``study`` with its SEG."""
    wanted = {study.study_uid, study.seg_series_uid}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        bundle = requests.get(f"{fhir_base}/Task", params={"_count": "100"}, timeout=30).json()
        for entry in bundle.get("entry", []):
            task = entry["resource"]
            inputs = {i.get("valueString") for i in task.get("input", [])}
            if wanted <= inputs and task["status"] in {"completed", "failed", "cancelled"}:
                return dict(task)
        time.sleep(0.25)  # the job runs about a second once Orthanc has called the study stable
    raise TimeoutError(f"no finished dosimetry job of study {study.study_uid} with its SEG in {timeout_s:.0f} s")
