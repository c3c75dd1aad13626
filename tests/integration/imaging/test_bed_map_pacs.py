"""The voxel BED map stored in the PACS (``DOSIMETRY_STORE_BED_MAP``, off by default): a second
RT Dose in the study, DoseType EFFECTIVE (PS3.3 C.8.8.3; DICOM CP-2379: a radiobiologically
weighted dose is an effective dose), read back from a real Orthanc over DICOMweb and checked
voxel by voxel against the Dale (1985) BED of the stored physical dose, and named by the report.

Expected BED per voxel, by hand: BED = D + D² · λ / ((μ + λ) · α/β), λ = ln 2 / 64.1 h; tumour
α/β 10 Gy, T_rep 1.5 h; liver α/β 2.5 Gy, T_rep 2.5 h; 0 Gy outside the liver and its lesions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from infra.orthanc_process import OrthancProcess
from netliver.settings import Settings
from services.dosimetry.fhir_in import voxel_job_request
from services.dosimetry.fhir_out import BED_MAP_EXTENSION, voxel_results
from services.dosimetry.imaging.dicomweb import make_client
from services.dosimetry.imaging.phantoms import build_study, four_lesion_liver, upload_study
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from services.dosimetry.imaging.rtdose import rtdose_array

LAMBDA = math.log(2) / 64.1


def _bed(dose: np.ndarray, alpha_beta: float, repair_h: float) -> np.ndarray:
    mu = math.log(2) / repair_h
    return dose + dose * dose * LAMBDA / ((mu + LAMBDA) * alpha_beta)


@pytest.fixture(scope="module")
def client(orthanc: OrthancProcess) -> Any:
    return make_client(orthanc.dicomweb_url)


def _rtdose_series(client: Any, study_uid: str) -> list[dict[str, Any]]:
    return [s for s in client.search_for_series(study_instance_uid=study_uid)
            if s.get("00080060", {}).get("Value") == ["RTDOSE"]]


def test_the_bed_map_is_stored_as_an_effective_dose_and_named_by_the_report(orthanc: OrthancProcess,
                                                                           client: Any) -> None:
    phantom = four_lesion_liver(n=32)
    study = build_study(phantom, "PT", seed=41, total_activity_gbq=0.4)
    upload_study(orthanc.url, study)
    result = run_voxel_dosimetry(client, study.study_uid, 0.4, "ldm", study.seg_series_uid, store_bed_map=True)
    assert result.bed_map_series_uid and result.bed_map_series_uid != result.rtdose_series_uid
    [bed_ds] = client.retrieve_series(study.study_uid, result.bed_map_series_uid)
    [dose_ds] = client.retrieve_series(study.study_uid, result.rtdose_series_uid)
    assert bed_ds.DoseType == "EFFECTIVE" and dose_ds.DoseType == "PHYSICAL"
    assert bed_ds.DoseUnits == "GY" and bed_ds.DoseSummationType == dose_ds.DoseSummationType
    assert bed_ds.FrameOfReferenceUID == dose_ds.FrameOfReferenceUID
    assert bed_ds.DoseComment == "Y-90 BED Gy (delivered); tumour+liver VOIs, else 0"
    assert bed_ds.SOPInstanceUID == result.bed_map_sop_instance_uid
    dose, bed = rtdose_array(dose_ds), rtdose_array(bed_ds)
    lesions = phantom.mask("lesion 1", "lesion 2", "lesion 3", "lesion 4")
    normal, outside = phantom.mask("normal liver"), phantom.mask("lungs", "body", "air")
    # one stored step of each map (uint16 × DoseGridScaling), carried through the quadratic term
    step = float(bed_ds.DoseGridScaling) + 2 * float(dose_ds.DoseGridScaling) * (1 + float(dose.max()) / 2.5)
    np.testing.assert_allclose(bed[lesions], _bed(dose[lesions], 10.0, 1.5), atol=step)
    np.testing.assert_allclose(bed[normal], _bed(dose[normal], 2.5, 2.5), atol=step)
    assert float(np.abs(bed[outside]).max()) == 0.0
    assert float(dose[phantom.mask("lungs")].max()) > 0  # the lungs have a dose, but no BED tissue
    # the report names the stored instance, and its Provenance the derivation
    request = voxel_job_request({"studyInstanceUid": study.study_uid, "administeredActivityGBq": 0.4,
                                 "method": "ldm", "segmentationSeriesUid": study.seg_series_uid})
    resources = voxel_results(result, request, "job-bed", "test").resources
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert report["extension"] == [{"url": BED_MAP_EXTENSION, "valueIdentifier": {
        "system": "urn:dicom:uid", "value": f"urn:oid:{bed_ds.SOPInstanceUID}"}}]
    assert result.bed_map_series_uid in report["conclusion"]
    prov = next(r for r in resources if r["resourceType"] == "Provenance")
    assert any(e["what"].get("identifier", {}).get("value") == f"urn:oid:{bed_ds.SOPInstanceUID}"
               for e in prov["entity"])


def test_by_default_only_the_dose_is_stored(orthanc: OrthancProcess, client: Any) -> None:
    assert Settings.from_env({}).dosimetry_store_bed_map is False
    assert Settings.from_env({"DOSIMETRY_STORE_BED_MAP": "1"}).dosimetry_store_bed_map is True
    study = build_study(four_lesion_liver(n=32), "PT", seed=42, total_activity_gbq=0.4)
    upload_study(orthanc.url, study)
    result = run_voxel_dosimetry(client, study.study_uid, 0.4, "ldm", study.seg_series_uid)
    assert result.bed_map_series_uid is None and result.rtdose_series_uid
    assert len(_rtdose_series(client, study.study_uid)) == 1
    request = voxel_job_request({"studyInstanceUid": study.study_uid, "administeredActivityGBq": 0.4,
                                 "method": "ldm", "segmentationSeriesUid": study.seg_series_uid})
    report = next(r for r in voxel_results(result, request, "job-dose", "test").resources
                  if r["resourceType"] == "DiagnosticReport")
    assert "extension" not in report
