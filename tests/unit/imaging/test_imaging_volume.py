"""Activity and CT volumes: geometry from DICOM attributes, rescale, units, decay correction."""

from __future__ import annotations

import math
from copy import deepcopy
from datetime import datetime, timedelta

import numpy as np
import pytest

from services.dosimetry.imaging.errors import GeometryError, NoActivitySeriesError
from services.dosimetry.imaging.phantoms import build_study, lung_shunt, two_compartment_liver
from services.dosimetry.imaging.volume import (
    activity_volume,
    ct_volume,
    parse_dicom_datetime,
    radiopharmaceutical,
)

Y90_HALF_LIFE_H = 64.1  # DDEP
TC99M_HALF_LIFE_H = 6.0067  # DDEP


@pytest.fixture(scope="module")
def pt_study():  # type: ignore[no-untyped-def]
    return build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=1, with_seg=False,
                       total_activity_gbq=2.0, hours_after_administration=3.0)


@pytest.fixture(scope="module")
def nm_study():  # type: ignore[no-untyped-def]
    return build_study(lung_shunt(n=24, voxel_mm=8.84), "NM", seed=2, with_seg=False,
                       hours_after_administration=2.0)


def test_pt_slices_are_sorted_along_the_normal_whatever_the_order(pt_study) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(reversed(pt_study.activity))
    shuffled[3], shuffled[10] = shuffled[10], shuffled[3]
    vol = activity_volume(shuffled)
    ordered = activity_volume(pt_study.activity)
    np.testing.assert_array_equal(vol.values, ordered.values)
    first = [float(v) for v in pt_study.activity[0].ImagePositionPatient]
    np.testing.assert_allclose(vol.grid.index_to_patient(np.array([0.0, 0.0, 0.0])), first)
    np.testing.assert_allclose(vol.grid.index_to_patient(np.array([2.0, 0.0, 1.0])),
                               [first[0] + 8.84, first[1], first[2] + 2 * 8.84])
    assert vol.grid.spacing_mm == pytest.approx((8.84, 8.84, 8.84))


def test_pt_start_decay_correction_recovers_the_administered_activity(pt_study) -> None:  # type: ignore[no-untyped-def]
    """Pixels are Bq/mL at the series start, 3 h after administration; decayed back to the
    administration the image must hold the 2 GBq recorded in the header."""
    vol = activity_volume(pt_study.activity)
    assert vol.units == "BQML"
    assert vol.reference_time == pt_study.administration
    assert vol.decay_factor == pytest.approx(2 ** (3.0 / Y90_HALF_LIFE_H), rel=1e-9)
    total_bq = vol.values.sum() * vol.grid.voxel_volume_ml
    assert total_bq == pytest.approx(2.0e9, rel=1e-4)


def test_pt_reference_time_can_be_the_acquisition(pt_study) -> None:  # type: ignore[no-untyped-def]
    vol = activity_volume(pt_study.activity, reference_time=pt_study.acquisition)
    assert vol.decay_factor == pytest.approx(1.0)
    total_bq = vol.values.sum() * vol.grid.voxel_volume_ml
    assert total_bq == pytest.approx(2.0e9 * 2 ** (-3.0 / Y90_HALF_LIFE_H), rel=1e-4)


def test_pt_decay_correction_none_uses_each_slice_time(pt_study) -> None:  # type: ignore[no-untyped-def]
    slices = deepcopy(pt_study.activity)
    for ds in slices:
        ds.DecayCorrection = "NONE"
        ds.ActualFrameDuration = 0
    corrected = activity_volume(slices)
    start = activity_volume(pt_study.activity)
    np.testing.assert_allclose(corrected.values, start.values, rtol=1e-9)


def test_pt_units_other_than_bqml_are_refused(pt_study) -> None:  # type: ignore[no-untyped-def]
    slices = deepcopy(pt_study.activity)
    for ds in slices:
        ds.Units = "CNTS"
    with pytest.raises(NoActivitySeriesError, match=r"Units \(0054,1001\) is CNTS") as err:
        activity_volume(slices)
    assert err.value.expression == "Units"


def test_nm_counts_are_decay_corrected_with_the_frame_duration(nm_study) -> None:  # type: ignore[no-untyped-def]
    vol = activity_volume(nm_study.activity)
    assert vol.units == "CNTS" and vol.modality == "NM"
    half_life_s = float(nm_study.activity[0].RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife)
    assert half_life_s == pytest.approx(TC99M_HALF_LIFE_H * 3600, rel=1e-5)
    lam_dt = math.log(2) / half_life_s * (20 * 60)
    expected = lam_dt / (1 - math.exp(-lam_dt)) * 2 ** (2.0 * 3600 / half_life_s)
    assert vol.decay_factor == pytest.approx(expected, rel=1e-9)
    design = nm_study.phantom.counts()
    np.testing.assert_allclose(vol.values, design * expected, rtol=1e-12)


def test_nm_geometry_comes_from_the_detector_information_sequence(nm_study) -> None:  # type: ignore[no-untyped-def]
    ds = nm_study.activity[0]
    assert "ImagePositionPatient" not in ds
    vol = activity_volume([ds])
    origin = nm_study.phantom.origin_mm()
    np.testing.assert_allclose(vol.grid.index_to_patient(np.array([0.0, 0.0, 0.0])), origin, atol=1e-3)
    np.testing.assert_allclose(vol.grid.index_to_patient(np.array([23.0, 0.0, 0.0])),
                               origin + np.array([0.0, 0.0, 23 * 8.84]), atol=1e-3)
    assert vol.radiopharmaceutical is not None
    # NM RadionuclideTotalDose is in MBq (PS3.3 C.8.4.10); read back in Bq
    assert vol.radiopharmaceutical.total_activity_bq == pytest.approx(2.0e9)
    assert vol.radiopharmaceutical.nuclide == "Tc-99m"


@pytest.mark.parametrize(("keyword", "tag"), [("ImagePositionPatient", "(0020,0032)"),
                                              ("ImageOrientationPatient", "(0020,0037)")])
def test_nm_missing_plane_attributes_are_named(nm_study, keyword: str, tag: str) -> None:  # type: ignore[no-untyped-def]
    ds = deepcopy(nm_study.activity[0])
    del ds.DetectorInformationSequence[0][keyword]
    with pytest.raises(GeometryError, match=rf"{keyword} \{tag[:5]}") as err:
        activity_volume([ds])
    assert err.value.expression == keyword


def test_nm_slice_spacing_falls_back_to_thickness_with_a_warning(nm_study) -> None:  # type: ignore[no-untyped-def]
    ds = deepcopy(nm_study.activity[0])
    del ds.SpacingBetweenSlices
    vol = activity_volume([ds])
    assert vol.grid.spacing_mm[0] == pytest.approx(8.84)
    assert any("SpacingBetweenSlices" in w for w in vol.warnings)
    del ds.SliceThickness
    with pytest.raises(GeometryError, match="SpacingBetweenSlices"):
        activity_volume([ds])


def test_nm_planar_image_is_refused(nm_study) -> None:  # type: ignore[no-untyped-def]
    ds = deepcopy(nm_study.activity[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    with pytest.raises(NoActivitySeriesError, match="not a reconstructed tomogram"):
        activity_volume([ds])


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_pt_missing_geometry_tag_is_named(pt_study, keyword: str) -> None:  # type: ignore[no-untyped-def]
    slices = deepcopy(pt_study.activity)
    del slices[5][keyword]
    with pytest.raises(GeometryError, match=keyword) as err:
        activity_volume(slices)
    assert err.value.expression == keyword


def test_uneven_slices_are_refused(pt_study) -> None:  # type: ignore[no-untyped-def]
    slices = [ds for i, ds in enumerate(pt_study.activity) if i != 7]
    with pytest.raises(GeometryError, match="not evenly spaced"):
        activity_volume(slices)


def test_non_orthonormal_orientation_is_refused(pt_study) -> None:  # type: ignore[no-untyped-def]
    slices = deepcopy(pt_study.activity)
    for ds in slices:
        ds.ImageOrientationPatient = [1, 0, 0, 0.5, 1, 0]
    with pytest.raises(GeometryError, match="orthonormal"):
        activity_volume(slices)


def test_ct_rescale_gives_hounsfield_units(pt_study) -> None:  # type: ignore[no-untyped-def]
    ct = ct_volume(pt_study.ct)
    assert ct.units == "HU"
    assert ct.values.min() == pytest.approx(-1000.0)
    design = np.repeat(np.repeat(np.repeat(pt_study.phantom.hu(), 2, 0), 2, 1), 2, 2)
    body = design > -900
    # noise of 10 HU around the design inside the body, exact air outside
    assert abs(float(np.mean(ct.values[body] - design[body]))) < 0.5
    np.testing.assert_array_equal(ct.values[~body], -1000.0)
    assert ct.grid.spacing_mm == pytest.approx((4.42, 4.42, 4.42))


def test_missing_radiopharmaceutical_means_no_decay_correction(pt_study) -> None:  # type: ignore[no-untyped-def]
    slices = deepcopy(pt_study.activity)
    for ds in slices:
        del ds.RadiopharmaceuticalInformationSequence
    vol = activity_volume(slices)
    assert vol.decay_factor == 1.0
    assert any("RadiopharmaceuticalInformationSequence" in w for w in vol.warnings)


def test_half_life_from_the_nuclide_code_when_the_tag_is_missing(pt_study) -> None:  # type: ignore[no-untyped-def]
    ds = deepcopy(pt_study.activity[0])
    del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife
    pharma, warnings = radiopharmaceutical(ds)
    assert pharma is not None and pharma.half_life_s == pytest.approx(Y90_HALF_LIFE_H * 3600)
    assert any("RadionuclideHalfLife" in w for w in warnings)


@pytest.mark.parametrize(("da", "tm", "expected"), [
    ("20240305", "093000", datetime(2024, 3, 5, 9, 30)),
    ("20240305", "093000.25", datetime(2024, 3, 5, 9, 30) + timedelta(microseconds=250000)),
    ("20240305113000.000000", None, datetime(2024, 3, 5, 11, 30)),
    ("20240305113000+0100", None, datetime(2024, 3, 5, 11, 30)),
    ("2024", None, None),
    ("", None, None),
])
def test_parse_dicom_datetime(da: str, tm: str | None, expected: datetime | None) -> None:
    assert parse_dicom_datetime(da, tm) == expected


def test_nm_exported_one_slice_per_instance_gives_the_same_volume() -> None:
    phantom = lung_shunt(n=16, voxel_mm=8.84)
    multi = activity_volume(build_study(phantom, "NM", seed=6, with_seg=False).activity)
    slices = build_study(phantom, "NM", seed=6, with_seg=False, nm_per_slice=True).activity
    assert len(slices) == 16
    per_slice = activity_volume(list(reversed(slices)))
    np.testing.assert_array_equal(per_slice.values, multi.values)
    np.testing.assert_allclose(per_slice.grid.affine, multi.grid.affine, atol=1e-3)
    assert per_slice.units == "CNTS" and per_slice.decay_factor == pytest.approx(multi.decay_factor)



def test_negative_voxels_are_clipped_with_a_warning_before_the_dose() -> None:
    """FBP reconstructions can hold negative values; they must not lower the VOI doses."""
    import numpy as np

    from services.dosimetry.imaging.pipeline import non_negative_counts

    counts, warning = non_negative_counts(np.array([[[4.0, -1.0], [2.0, 3.0]]], dtype=np.float32))
    assert counts.dtype == np.float32 and counts.min() == 0 and counts.sum() == 9.0
    assert warning is not None and "1 voxels" in warning and "10.00 %" in warning
    clean, none = non_negative_counts(np.ones((2, 2, 2)))
    assert none is None and clean.sum() == 8


# -- radionuclide identification (MAA simulation vs Y-90 record) ---------------------------------

@pytest.mark.parametrize(("code", "scheme", "nuclide"), [
    ("C-163A8", "SRT", "Tc-99m"),   # retired SNOMED-RT code of CID 18, still written by NM systems
    ("72454006", "SCT", "Tc-99m"),
    ("C-162A7", "SRT", "Y-90"),
    ("14691008", "SCT", "Y-90"),
])
def test_nuclide_from_current_and_legacy_cid18_codes(nm_study, code: str, scheme: str,  # type: ignore[no-untyped-def]
                                                     nuclide: str) -> None:
    ds = deepcopy(nm_study.activity[0])
    item = ds.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence[0]
    item.CodeValue, item.CodingSchemeDesignator = code, scheme
    del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife
    pharma, _ = radiopharmaceutical(ds)
    assert pharma is not None and pharma.nuclide == nuclide


def test_tc99m_is_recognised_by_its_half_life_when_the_code_is_absent(nm_study) -> None:  # type: ignore[no-untyped-def]
    ds = deepcopy(nm_study.activity[0])
    del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence
    pharma, warnings = radiopharmaceutical(ds)
    assert pharma is not None and pharma.nuclide == "Tc-99m"
    assert any("RadionuclideHalfLife" in w and "Tc-99m" in w for w in warnings)


def test_an_unknown_half_life_does_not_name_a_nuclide(nm_study) -> None:  # type: ignore[no-untyped-def]
    ds = deepcopy(nm_study.activity[0])
    del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence
    # Lu-177, 6.647 d (DDEP): neither Tc-99m nor Y-90; 1.1 × the Tc-99m half-life is not Tc-99m either
    for half_life_s in (6.647 * 86400, 1.1 * TC99M_HALF_LIFE_H * 3600):
        ds.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife = f"{half_life_s:.6g}"
        pharma, _ = radiopharmaceutical(ds)
        assert pharma is not None and pharma.nuclide == "unknown"


# -- NM slice stacking direction -----------------------------------------------------------------

def test_nm_negative_spacing_between_slices_stacks_against_the_normal(nm_study) -> None:  # type: ignore[no-untyped-def]
    """PS3.3 C.8.4.15: the sign of SpacingBetweenSlices is the stacking direction. The same volume
    written from the last slice with a negative spacing must land on the same patient positions."""
    ds = deepcopy(nm_study.activity[0])
    forward = activity_volume([ds])
    n = forward.grid.shape[0]
    last = forward.grid.index_to_patient(np.array([n - 1.0, 0.0, 0.0]))
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1]).tobytes()
    ds.DetectorInformationSequence[0].ImagePositionPatient = [f"{v:.6f}" for v in last]
    ds.SpacingBetweenSlices = "-8.84"
    backward = activity_volume([ds])
    np.testing.assert_allclose(backward.values, forward.values[::-1], rtol=1e-12)
    for k in (0, 5, n - 1):
        np.testing.assert_allclose(backward.grid.index_to_patient(np.array([float(k), 3.0, 4.0])),
                                   forward.grid.index_to_patient(np.array([float(n - 1 - k), 3.0, 4.0])), atol=1e-3)
    assert backward.grid.voxel_volume_ml == pytest.approx(forward.grid.voxel_volume_ml)
    ds.SpacingBetweenSlices = "0"
    with pytest.raises(GeometryError, match="SpacingBetweenSlices"):
        activity_volume([ds])


# -- times: no silent midnight, no injection after the scan ----------------------------------------

def test_a_date_without_a_time_is_not_midnight_for_decay_correction() -> None:
    assert parse_dicom_datetime("20240305", None) == datetime(2024, 3, 5)
    assert parse_dicom_datetime("20240305", None, require_time=True) is None
    assert parse_dicom_datetime("20240305", "0930", require_time=True) == datetime(2024, 3, 5, 9, 30)
    assert parse_dicom_datetime("202403050930", None, require_time=True) == datetime(2024, 3, 5, 9, 30)


def test_nm_without_acquisition_time_is_not_decayed_from_midnight(nm_study) -> None:  # type: ignore[no-untyped-def]
    ds = deepcopy(nm_study.activity[0])
    for keyword in ("AcquisitionTime", "SeriesTime", "AcquisitionDateTime"):
        if keyword in ds:
            delattr(ds, keyword)
    vol = activity_volume([ds])
    assert vol.decay_factor == 1.0
    assert any("AcquisitionDate/Time missing" in w for w in vol.warnings)


def _pt_with_start_time_only(pt_study, start_time: str):  # type: ignore[no-untyped-def]
    slices = deepcopy(pt_study.activity)
    for ds in slices:
        item = ds.RadiopharmaceuticalInformationSequence[0]
        del item.RadiopharmaceuticalStartDateTime
        item.RadiopharmaceuticalStartTime = start_time
    return slices


def test_start_time_only_later_in_the_day_than_the_scan_is_the_day_before(pt_study) -> None:  # type: ignore[no-untyped-def]
    acquisition = pt_study.acquisition
    evening = (acquisition - timedelta(hours=14)).strftime("%H%M%S")
    assert (acquisition - timedelta(hours=14)).date() < acquisition.date() or int(evening) > int(
        acquisition.strftime("%H%M%S"))
    vol = activity_volume(_pt_with_start_time_only(pt_study, evening))
    assert vol.radiopharmaceutical is not None
    assert vol.radiopharmaceutical.administration == acquisition - timedelta(hours=14)
    assert vol.decay_factor == pytest.approx(2 ** (14.0 / Y90_HALF_LIFE_H), rel=1e-9)
    assert any("day before" in w for w in vol.warnings)


def test_start_time_only_earlier_in_the_day_is_the_series_date(pt_study) -> None:  # type: ignore[no-untyped-def]
    same_day = pt_study.administration.strftime("%H%M%S")
    vol = activity_volume(_pt_with_start_time_only(pt_study, same_day))
    assert vol.radiopharmaceutical is not None
    assert vol.radiopharmaceutical.administration == pt_study.administration
    assert vol.decay_factor == pytest.approx(2 ** (3.0 / Y90_HALF_LIFE_H), rel=1e-9)
    assert any("series date" in w for w in vol.warnings)


def test_an_administration_after_the_acquisition_is_not_used(pt_study) -> None:  # type: ignore[no-untyped-def]
    slices = deepcopy(pt_study.activity)
    later = pt_study.acquisition + timedelta(hours=2)
    for ds in slices:
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = later.strftime("%Y%m%d%H%M%S")
    vol = activity_volume(slices)
    assert vol.decay_factor == pytest.approx(1.0)
    assert any("after the acquisition" in w for w in vol.warnings)


def test_an_image_without_attenuation_correction_is_named(nm_study) -> None:  # type: ignore[no-untyped-def]
    assert not any("ATTN" in w for w in activity_volume(nm_study.activity).warnings)
    ds = deepcopy(nm_study.activity[0])
    ds.CorrectedImage = ["SCAT"]
    assert any("CorrectedImage (0028,0051)" in w and "ATTN" in w for w in activity_volume([ds]).warnings)
    del ds.CorrectedImage
    assert any("CorrectedImage (0028,0051) missing" in w for w in activity_volume([ds]).warnings)


def test_pt_start_correction_uses_decay_correction_datetime_when_given(pt_study) -> None:  # type: ignore[no-untyped-def]
    """Values decay corrected to DecayCorrectionDateTime (0018,9701), 1 h after administration
    (not to the series start 3 h after): back to the administration is 2^(1 h / T½)."""
    slices = deepcopy(pt_study.activity)
    one_hour = (pt_study.administration + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    for ds in slices:
        ds.DecayCorrectionDateTime = one_hour
    assert activity_volume(slices).decay_factor == pytest.approx(2 ** (1.0 / Y90_HALF_LIFE_H), rel=1e-9)
    assert activity_volume(pt_study.activity).decay_factor == pytest.approx(2 ** (3.0 / Y90_HALF_LIFE_H), rel=1e-9)


def test_a_zero_rescale_slope_is_refused_and_a_missing_one_is_one(pt_study) -> None:  # type: ignore[no-untyped-def]
    slices = deepcopy(pt_study.activity)
    slices[4].RescaleSlope = "0"
    with pytest.raises(GeometryError, match=r"RescaleSlope \(0028,1053\)") as err:
        activity_volume(slices)
    assert err.value.expression == "RescaleSlope" and err.value.status == 422
    ds = deepcopy(pt_study.activity[4])
    stored = ds.pixel_array.astype(np.float64)
    del ds.RescaleSlope
    del ds.RescaleIntercept
    ds.DecayCorrection = "ADMIN"  # no decay factor: the values are the stored ones
    np.testing.assert_array_equal(activity_volume([ds]).values[0], stored)


def _philips_cnts(pt_study, factor: float, with_scale: bool = True) -> list:  # type: ignore[no-untyped-def]
    """The PET series as a Philips system writes it in counts: RescaleSlope divided by the
    activity concentration scale factor, which goes into private (7053,1009)."""
    out = []
    for ds in pt_study.activity:
        copy = deepcopy(ds)
        copy.Manufacturer = "Philips Medical Systems"
        copy.Units = "CNTS"
        copy.RescaleSlope = f"{float(ds.RescaleSlope) / factor:.12g}"
        if with_scale:
            block = copy.private_block(0x7053, "Philips PET Private Group", create=True)
            block.add_new(0x09, "DS", f"{factor:.12g}")
        out.append(copy)
    return out


def test_philips_counts_with_their_scale_factor_are_activity_concentration(pt_study) -> None:  # type: ignore[no-untyped-def]
    classic = activity_volume(pt_study.activity)
    philips = activity_volume(_philips_cnts(pt_study, 3.7))
    assert philips.units == "BQML"
    np.testing.assert_allclose(philips.values, classic.values, rtol=1e-9)
    assert any("(7053,1009)" in w for w in philips.warnings)
    with pytest.raises(NoActivitySeriesError, match=r"PT Units \(0054,1001\) is CNTS") as err:
        activity_volume(_philips_cnts(pt_study, 3.7, with_scale=False))
    assert err.value.expression == "Units"


def test_units_spelt_bq_per_ml_are_bqml(pt_study) -> None:  # type: ignore[no-untyped-def]
    """Some exports write the unit as text, which is not even a valid CS value."""
    import warnings

    spelt = [deepcopy(ds) for ds in pt_study.activity]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that "Bq/ml" is not a valid CS value
        for ds in spelt:
            ds.Units = "Bq/ml"
    vol = activity_volume(spelt)
    assert vol.units == "BQML"
    np.testing.assert_array_equal(vol.values, activity_volume(pt_study.activity).values)


def test_nm_rescale_is_applied_and_the_instance_is_left_as_read(nm_study) -> None:  # type: ignore[no-untyped-def]
    """RescaleSlope and RescaleIntercept scale the stored counts (worked in place on the volume,
    never on the instance's own bytes: reading it twice gives the same volume)."""
    from services.dosimetry.imaging.pixels import decoded_pixels

    ds = deepcopy(nm_study.activity[0])
    ds.RescaleSlope, ds.RescaleIntercept = "2.5", "3"
    stored = decoded_pixels(ds, "NM").astype(np.float64)
    before = bytes(ds.PixelData)
    first = activity_volume([ds])
    np.testing.assert_array_equal(first.values, (stored * 2.5 + 3) * first.decay_factor)
    assert bytes(ds.PixelData) == before
    np.testing.assert_array_equal(activity_volume([ds]).values, first.values)
