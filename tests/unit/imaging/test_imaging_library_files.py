"""DICOM files nobody here wrote: the test files pydicom ships (CT, MR, NM secondary captures,
RT Dose, RTSTRUCT, SEG; uncompressed, big endian, deflated, RLE, JPEG, JPEG-LS, JPEG 2000;
and truncated ones) through the pipeline's readers. Each is read correctly (equal to the
reference reading) or refused with a clear 422 naming the problem."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from services.dosimetry.imaging.errors import ImagingError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.pixels import decoded_pixels
from services.dosimetry.imaging.rtdose import rtdose_array
from services.dosimetry.imaging.voi import vois_from_dataset
from services.dosimetry.imaging.volume import activity_volume, ct_volume


def _read(name: str, force: bool = False) -> Dataset:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom does not ship {name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some of these files are deliberately malformed
        return pydicom.dcmread(path, force=force)


def _refusal(call: Any, *args: Any) -> ImagingError:
    with pytest.raises(ImagingError) as err:
        call(*args)
    assert err.value.status == 422 and err.value.expression
    return err.value


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_J2KI.dcm"])
def test_a_ct_slice_reads_as_hounsfield_units_on_its_plane(name: str) -> None:
    ds = _read(name)
    vol = ct_volume([ds])
    expected = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(vol.values[0], expected.astype(np.float32))
    np.testing.assert_allclose(vol.grid.first_position_mm, [float(v) for v in ds.ImagePositionPatient])
    assert vol.grid.spacing_mm[1:] == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm"])
def test_lossless_variants_decode_to_the_uncompressed_pixels(name: str) -> None:
    reference = _read("MR_small.dcm").pixel_array
    np.testing.assert_array_equal(decoded_pixels(_read(name), name), reference)


def test_an_mr_is_not_taken_for_a_ct() -> None:
    err = _refusal(ct_volume, [_read("MR_small.dcm")])
    assert err.expression == "Modality" and "MR" in err.message


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "JPEG-lossy.dcm", "JPGExtended.dcm"])
def test_an_nm_secondary_capture_is_refused_as_an_activity_image(name: str) -> None:
    """NM screenshots (Secondary Capture, no patient geometry) are not a tomogram."""
    err = _refusal(activity_volume, [_read(name)])
    assert err.expression in {"ImagePositionPatient", "ImageType"}


def test_jpeg_2000_decodes_and_12_bit_jpeg_extended_is_refused_naming_its_syntax() -> None:
    """12-bit lossy JPEG (Process 4) has no decoder among the installed packages (the one that
    has it, pylibjpeg-libjpeg, is GPL-licensed): a 422 that names the transfer syntax."""
    ds = _read("JPEG2000.dcm")
    assert decoded_pixels(ds, "JPEG2000.dcm").shape == (int(ds.Rows), int(ds.Columns))
    for name in ("JPEG-lossy.dcm", "JPGExtended.dcm"):
        err = _refusal(decoded_pixels, _read(name), name)
        assert err.expression == "TransferSyntaxUID" and "JPEG Extended" in err.message


@pytest.mark.parametrize(("name", "expression"), [("ExplVR_BigEnd.dcm", "Modality"), ("image_dfl.dcm", "Modality")])
def test_other_modalities_are_refused_as_activity_images(name: str, expression: str) -> None:
    assert _refusal(activity_volume, [_read(name)]).expression == expression


def test_a_truncated_file_is_refused_naming_its_pixel_data() -> None:
    err = _refusal(decoded_pixels, _read("MR_truncated.dcm"), "MR_truncated.dcm")
    assert err.expression == "PixelData"


def test_an_rt_plan_is_not_a_segmentation() -> None:
    ds = _read("rtplan_truncated.dcm")
    err = _refusal(vois_from_dataset, ds, None, Grid((1, 1, 1), np.eye(4)))
    assert "RTPLAN" in err.message


@pytest.mark.parametrize("name", ["rtdose_rle.dcm", "rtdose_expb.dcm"])
def test_rt_dose_variants_read_as_the_same_dose(name: str) -> None:
    reference = _read("rtdose.dcm")
    dose = rtdose_array(_read(name))
    np.testing.assert_allclose(dose, reference.pixel_array * float(reference.DoseGridScaling))
    assert dose.shape == (int(reference.NumberOfFrames), int(reference.Rows), int(reference.Columns))


def _shoelace_mm2(points_xy: np.ndarray) -> float:
    x, y = points_xy[:, 0], points_xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def test_pydicoms_rtstruct_gives_its_closed_roi_and_skips_its_points() -> None:
    ds = _read("rtstruct.dcm", force=True)
    frame = str(ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID)
    [roi] = [r for r in ds.ROIContourSequence if int(r.ReferencedROINumber) == 1]
    planes = [np.array([float(v) for v in c.ContourData]).reshape(-1, 3) for c in roi.ContourSequence]
    z = sorted({float(p[0, 2]) for p in planes})
    lo = np.min([p.min(axis=0) for p in planes], axis=0) - 5.0
    # a 1 mm grid in the structure set's Frame of Reference, one 10 mm slice per contour plane
    affine = np.eye(4)
    affine[:3, 0] = [0.0, 0.0, z[1] - z[0]]
    affine[:3, 1] = [0.0, 1.0, 0.0]
    affine[:3, 2] = [1.0, 0.0, 0.0]
    affine[:3, 3] = [lo[0], lo[1], z[0]]
    hi = np.max([p.max(axis=0) for p in planes], axis=0) + 5.0
    shape = (len(z), int(hi[1] - lo[1]) + 1, int(hi[0] - lo[0]) + 1)
    grid = Grid(shape, affine, frame)
    vois = vois_from_dataset(ds, grid, grid)
    assert [v.name for v in vois] == ["patient"]  # the two POINT ROIs (isocentres) enclose no volume
    expected_ml = sum(_shoelace_mm2(p[:, :2]) for p in planes) * (z[1] - z[0]) / 1000.0
    assert vois[0].voxel_count * grid.voxel_volume_ml == pytest.approx(expected_ml, rel=0.01)
    ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = "1.2.3"
    assert "'patient' is in another Frame of Reference" in _refusal(vois_from_dataset, ds, grid, grid).message


def test_pydicoms_one_frame_seg_gives_its_segment_on_its_plane() -> None:
    """liver_1frame.dcm: one frame of a liver SEG (3 per-frame items kept from the larger SEG
    it was cut from; NumberOfFrames absent, so 1): the segment is its set pixels, on the first plane."""
    ds = _read("liver_1frame.dcm")
    shared = ds.SharedFunctionalGroupsSequence[0]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    ipp = [float(v) for v in ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient]
    grid = Grid.from_dicom((1, int(ds.Rows), int(ds.Columns)), np.array(ipp), np.array([1.0, 0, 0, 0, 1.0, 0]),
                           (spacing[0], spacing[1]), np.array([0.0, 0.0, 1.0]), str(ds.FrameOfReferenceUID))
    [voi] = vois_from_dataset(ds, None, grid)
    np.testing.assert_array_equal(voi.mask[0], ds.pixel_array.astype(bool))
    assert voi.source == "segmentation"
