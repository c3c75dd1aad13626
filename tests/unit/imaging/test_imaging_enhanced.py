"""Enhanced multi-frame CT and PET (one instance holding every slice) give the doses of the
classic per-slice series they were converted from (highdicom's Legacy Converted Enhanced CT /
PET, PS3.3 A.70 / A.72), with LDM and DVK."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from services.dosimetry.imaging.errors import GeometryError, NoActivitySeriesError
from services.dosimetry.imaging.phantoms import PhantomStudy, build_study, two_compartment_liver
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from services.dosimetry.imaging.volume import activity_volume, ct_volume
from tests.support.memory_dicomweb import MemoryDicomweb


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=90)


@pytest.fixture(scope="module")
def enhanced(study: PhantomStudy) -> dict[str, Dataset]:
    ct = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=study.ct, series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(),
        instance_number=1)
    pt = hd.legacy.LegacyConvertedEnhancedPETImage(
        legacy_datasets=study.activity, series_instance_uid=hd.UID(), series_number=3, sop_instance_uid=hd.UID(),
        instance_number=1)
    return {"CT": ct, "PT": pt}


def _doses(study: PhantomStudy, datasets: list[Dataset], method: str) -> dict[str, float]:
    result = run_voxel_dosimetry(MemoryDicomweb(datasets), study.study_uid, 1.5, method, study.seg_series_uid,
                                 store=False)
    return {v.name: v.metrics["Dmean"] for v in result.vois}


@pytest.mark.parametrize("method", ["ldm", "dvk"])
def test_enhanced_ct_and_pet_give_the_classic_doses(study: PhantomStudy, enhanced: dict[str, Any],
                                                    method: str) -> None:
    assert study.seg is not None
    classic = _doses(study, study.datasets(), method)
    multi = _doses(study, [enhanced["PT"], enhanced["CT"], study.seg], method)
    assert multi.keys() == classic.keys()
    for name, value in classic.items():
        # the dose engine runs in float32 (7 significant digits): the same doses to 1e-6
        assert multi[name] == pytest.approx(value, rel=1e-6), name


def test_enhanced_volumes_equal_the_classic_ones(study: PhantomStudy, enhanced: dict[str, Any]) -> None:
    ct, classic_ct = ct_volume([enhanced["CT"]]), ct_volume(study.ct)
    assert ct.grid.shape == classic_ct.grid.shape
    # highdicom may stack the frames head to feet: compare slice by slice in the same order
    values = ct.values if ct.grid.affine[2, 0] > 0 else ct.values[::-1]
    np.testing.assert_array_equal(values, classic_ct.values)
    pt, classic_pt = activity_volume([enhanced["PT"]]), activity_volume(study.activity)
    assert pt.units == "BQML" and pt.decay_factor == pytest.approx(classic_pt.decay_factor, rel=1e-12)
    assert pt.values.sum() == pytest.approx(classic_pt.values.sum(), rel=1e-9)


def test_native_enhanced_pet_units_and_decay_correction_are_mapped(study: PhantomStudy,
                                                                  enhanced: dict[str, Any]) -> None:
    """An Enhanced PET gives its units by a real-world value map (UCUM Bq/ml) and its decay
    correction by DecayCorrected YES at DecayCorrectionDateTime, not by Units/DecayCorrection."""
    pt = deepcopy(enhanced["PT"])
    converted = pt.SharedFunctionalGroupsSequence[0].UnassignedSharedConvertedAttributesSequence[0]
    for keyword in ("Units", "DecayCorrection"):
        if keyword in converted:
            delattr(converted, keyword)
        if keyword in pt:
            delattr(pt, keyword)
    for frame in pt.PerFrameFunctionalGroupsSequence:  # one map per frame, as the rescale is per frame
        unit = Dataset()
        unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
        rescale = frame.PixelValueTransformationSequence[0]
        mapping = Dataset()
        mapping.MeasurementUnitsCodeSequence = DicomSequence([unit])
        mapping.LUTExplanation, mapping.LUTLabel = "activity concentration", "BQML"
        mapping.RealWorldValueFirstValueMapped, mapping.RealWorldValueLastValueMapped = 0, 65535
        mapping.RealWorldValueSlope = float(rescale.RescaleSlope)
        mapping.RealWorldValueIntercept = float(rescale.RescaleIntercept)
        frame.RealWorldValueMappingSequence = DicomSequence([mapping])
    pt.DecayCorrected = "YES"
    first = study.activity[0]
    pt.DecayCorrectionDateTime = f"{first.SeriesDate}{first.SeriesTime}"
    vol, classic = activity_volume([pt]), activity_volume(study.activity)
    assert vol.units == "BQML"
    assert vol.decay_factor == pytest.approx(classic.decay_factor, rel=1e-12)
    assert vol.values.sum() == pytest.approx(classic.values.sum(), rel=1e-9)


def test_enhanced_frames_off_a_regular_volume_are_refused_by_name(enhanced: dict[str, Any]) -> None:
    ct = deepcopy(enhanced["CT"])
    plane = ct.PerFrameFunctionalGroupsSequence[5].PlanePositionSequence[0]
    x, y, z = (float(v) for v in plane.ImagePositionPatient)
    plane.ImagePositionPatient = [x, y, z + 1.3]
    with pytest.raises(GeometryError, match="regularly spaced volume") as err:
        ct_volume([ct])
    assert err.value.status == 422 and err.value.expression == "PerFrameFunctionalGroupsSequence"


# -- enhanced PET whose frames are not decay corrected ----------------------------------------

def _uncorrected_slices(study: PhantomStudy, minutes_per_slice: float) -> list[Dataset]:
    """The PT slices as a scanner writes them without decay correction (DecayCorrection NONE):
    slice k acquired ``minutes_per_slice``·k after the series start, its values the activity
    decayed to that time."""
    import math
    from datetime import datetime, timedelta

    half_life_s = float(study.activity[0].RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife)
    out = []
    for k, ds in enumerate(sorted(deepcopy(study.activity), key=lambda d: float(d.ImagePositionPatient[2]))):
        start = datetime.strptime(f"{ds.AcquisitionDate}{ds.AcquisitionTime}", "%Y%m%d%H%M%S.%f")
        delay_s = 60.0 * minutes_per_slice * k
        ds.AcquisitionTime = (start + timedelta(seconds=delay_s)).strftime("%H%M%S.%f")
        ds.DecayCorrection = "NONE"
        ds.ActualFrameDuration = 0
        ds.RescaleSlope = f"{float(ds.RescaleSlope) * math.pow(2.0, -delay_s / half_life_s):.12g}"
        out.append(ds)
    return out


def _enhanced_pet(slices: list[Dataset]) -> Dataset:
    return hd.legacy.LegacyConvertedEnhancedPETImage(
        legacy_datasets=slices, series_instance_uid=hd.UID(), series_number=3, sop_instance_uid=hd.UID(),
        instance_number=1)


def test_enhanced_pet_without_decay_correction_is_corrected_frame_by_frame(study: PhantomStudy) -> None:
    """Frames 20 min apart (a slow whole-body PET; 8 h over the volume, 8 % Y-90 decay): each frame
    is corrected from its own Frame Acquisition DateTime (0018,9074), like the classic slices,
    and both give the decay-corrected (START) image."""
    slices = _uncorrected_slices(study, 20.0)
    classic, corrected = activity_volume(slices), activity_volume(study.activity)
    np.testing.assert_allclose(classic.values, corrected.values, rtol=1e-9)
    pt = _enhanced_pet(slices)
    assert pt.SharedFunctionalGroupsSequence[0].UnassignedSharedConvertedAttributesSequence[0].DecayCorrection == "NONE"
    multi = activity_volume([pt])
    values = multi.values if multi.grid.affine[2, 0] > 0 else multi.values[::-1]
    np.testing.assert_allclose(values, corrected.values, rtol=1e-9)
    assert not any("not read" in w for w in multi.warnings)


def test_native_enhanced_pet_decay_corrected_no_is_corrected_frame_by_frame(study: PhantomStudy) -> None:
    """A native Enhanced PET says DecayCorrected (0018,9758) NO instead of DecayCorrection NONE."""
    pt = _enhanced_pet(_uncorrected_slices(study, 20.0))
    converted = pt.SharedFunctionalGroupsSequence[0].UnassignedSharedConvertedAttributesSequence[0]
    del converted.DecayCorrection
    pt.DecayCorrected = "NO"
    multi = activity_volume([pt])
    values = multi.values if multi.grid.affine[2, 0] > 0 else multi.values[::-1]
    np.testing.assert_allclose(values, activity_volume(study.activity).values, rtol=1e-9)


def test_enhanced_pet_without_decay_correction_or_frame_times_is_refused_by_name(study: PhantomStudy) -> None:
    pt = _enhanced_pet(_uncorrected_slices(study, 20.0))
    del pt.PerFrameFunctionalGroupsSequence[4].FrameContentSequence[0].FrameAcquisitionDateTime
    with pytest.raises(NoActivitySeriesError, match=r"frame 5 has no Frame Acquisition DateTime \(0018,9074\)") as err:
        activity_volume([pt])
    assert err.value.status == 422 and err.value.expression == "FrameAcquisitionDateTime"
