"""Voxel BED and EQD2 per VOI in the voxel pipeline: tissue by role, computed voxel by voxel."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from services.dosimetry.domain.radiobiology import TissueRadiobiology, TissueTable
from services.dosimetry.fhir_in import voxel_job_request
from services.dosimetry.fhir_out import voxel_results
from services.dosimetry.imaging.phantoms import PhantomStudy, build_study, lung_shunt
from services.dosimetry.imaging.pipeline import VoxelDosimetryResult, run_voxel_dosimetry
from services.dosimetry.imaging.voi import seg_vois
from tests.support.memory_dicomweb import MemoryDicomweb

#: Y-90 physical half-life (h) of the BED's decay constant.
Y90_H = 64.1


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    # liver with one tumour under two lungs, as a Y-90 PET: liver, tumour and lung VOIs
    return build_study(lung_shunt(n=24, voxel_mm=8.84, nuclide="Y-90"), "PT", seed=5)


def _run(study: PhantomStudy, tissues: TissueTable | None = None) -> VoxelDosimetryResult:
    return run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 2.0, "ldm", study.seg_series_uid,
                               store=False, tissues=tissues)


def _by_role(result: VoxelDosimetryResult, role: str) -> Any:
    return next(v for v in result.vois if v.role == role)


def _hand_bed_mean(dose: np.ndarray, alpha_beta: float, repair_h: float) -> float:
    """Mean over voxels of D + D²·λ/((μ+λ)·α/β), in this test's own arithmetic."""
    lam = math.log(2) / Y90_H
    mu = math.log(2) / repair_h
    d = np.clip(dose, 0, None)
    return float(np.mean(d + d * d * lam / ((mu + lam) * alpha_beta)))


def test_tumour_and_liver_vois_get_their_own_tissue_values_and_the_lungs_none(study: PhantomStudy) -> None:
    result = _run(study)
    masks = {v.name: v.mask for v in seg_vois(study.seg, result.grid)}  # type: ignore[arg-type]
    tumour, liver, lung = _by_role(result, "tumour"), _by_role(result, "liver"), _by_role(result, "lung")
    for voi, ab, rep in ((tumour, 10.0, 1.5), (liver, 2.5, 2.5)):
        expected = _hand_bed_mean(result.dose_gy[masks[voi.name]], ab, rep)
        # the dose map is float32 (single-precision FFT): the voxel BED agrees to float32 rounding
        assert voi.radiobiology["BEDmean"] == pytest.approx(expected, rel=1e-6)
        assert voi.radiobiology["EQD2mean"] == pytest.approx(expected / (1 + 2 / ab), rel=1e-6)
        # the mean BED is at least the BED of the mean dose (D² is convex), never equal on a
        # non-uniform VOI
        d = voi.metrics["Dmean"]
        assert voi.radiobiology["BEDmean"] > d + d * d * (math.log(2) / Y90_H) / (
            (math.log(2) / rep + math.log(2) / Y90_H) * ab)
        assert voi.radiobiology["BED70"] <= voi.radiobiology["BEDmean"] * 1.5
    assert lung.tissue is None and lung.radiobiology == {}
    # the normal liver (liver minus tumours, derived) takes the liver values
    normal = _by_role(result, "normal-liver")
    assert normal.tissue is not None and normal.tissue.alpha_beta_gy == 2.5 and normal.radiobiology["BEDmean"] > 0


def test_tissue_settings_change_the_bed(study: PhantomStudy) -> None:
    default = _by_role(_run(study), "tumour").radiobiology["BEDmean"]
    slow = TissueTable(tumour=TissueRadiobiology("tumour", 3.0, 1.5, "test"))
    changed = _by_role(_run(study, slow), "tumour").radiobiology["BEDmean"]
    assert changed > default  # a lower α/β raises the quadratic term


def test_voi_observations_carry_bed_components_only_for_tissues_with_values(study: PhantomStudy) -> None:
    result = _run(study)
    request = voxel_job_request({"studyInstanceUid": study.study_uid, "administeredActivityGBq": 2.0,
                                 "method": "ldm", "segmentationSeriesUid": study.seg_series_uid})
    done = voxel_results(result, request, "job-1", "test")
    observations = {o["bodySite"]["text"].split(" (")[0]: o for o in done.resources
                    if o["resourceType"] == "Observation"}
    tumour = _by_role(result, "tumour")
    codes = {c["code"]["coding"][0]["code"]: c.get("valueQuantity")
             for c in observations[tumour.name]["component"] if c["code"].get("coding")}
    assert codes["bed-mean"]["value"] == pytest.approx(tumour.radiobiology["BEDmean"], abs=1e-4)
    assert codes["eqd2-mean"]["value"] == pytest.approx(tumour.radiobiology["EQD2mean"], abs=1e-4)
    assert codes["bed-d70"]["unit"] == "Gy" and codes["alpha-beta"]["value"] == 10.0
    lung_codes = {c["code"]["coding"][0]["code"] for c in observations[_by_role(result, "lung").name]["component"]
                  if c["code"].get("coding")}
    assert "bed-mean" not in lung_codes and "dose-mean" in lung_codes
