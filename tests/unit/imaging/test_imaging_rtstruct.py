"""RTSTRUCT to VOIs: partial-volume rasterisation, holes, and named refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dosimetry.imaging.errors import SegmentationError
from services.dosimetry.imaging.phantoms import PhantomStudy, build_study, sphere_in_cylinder
from services.dosimetry.imaging.rtstruct import contour_fraction, rtstruct_vois
from services.dosimetry.imaging.volume import activity_volume, ct_volume
from tests.support.rtstruct_builder import Contour, ellipse, ellipsoid_contours, rtstruct


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    # emission voxels of 8.84 mm, CT voxels of 4.42 mm (2 × 2 × 2 CT voxels per emission voxel)
    return build_study(sphere_in_cylinder(n=16, voxel_mm=8.84), "PT", seed=40, with_seg=False)


def _square(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def test_contour_fraction_is_the_share_of_each_pixel_inside() -> None:
    # pixel (j, i) spans [j − ½, j + ½] × [i − ½, i + ½]; a rectangle over pixel 0 and half of pixel 1
    ring_ji = np.array([[-0.5, -0.5], [-0.5, 1.0], [0.5, 1.0], [0.5, -0.5]])
    fraction = contour_fraction([ring_ji], (3, 3))
    np.testing.assert_allclose(fraction, [[1.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 10.0), st.floats(0.0, 10.0), st.floats(1.0, 9.0), st.floats(1.0, 9.0))
def test_contour_fractions_add_up_to_the_contour_area(j0: float, i0: float, height: float, width: float) -> None:
    ring = np.array([[j0, i0], [j0, i0 + width], [j0 + height, i0 + width], [j0 + height, i0]])
    total = float(contour_fraction([ring], (24, 24)).sum())
    # each boundary pixel is sampled on an 8 × 8 sub-grid: at most 1/8 of a pixel per unit of edge
    assert total == pytest.approx(height * width, abs=2 * (height + width) / 8 + 1e-6)


def test_an_inner_contour_is_a_hole() -> None:
    outer = ellipse((0.0, 0.0), (8.0, 8.0), 180)[:, ::-1] + 10.0
    inner = ellipse((0.0, 0.0), (4.0, 4.0), 180)[:, ::-1] + 10.0
    fraction = contour_fraction([outer, inner], (21, 21))
    assert fraction[10, 10] == 0.0 and fraction[10, 16] == 1.0
    assert float(fraction.sum()) == pytest.approx(np.pi * (8.0**2 - 4.0**2), rel=0.01)


def _x_edge(study: PhantomStudy, share: float) -> tuple[float, float, int]:
    """x (mm) that cuts emission column i = 8 at ``share`` of its width; its first and last column."""
    grid = activity_volume(study.activity).grid
    x_left_of_8 = float(grid.index_to_patient(np.array([0.0, 0.0, 7.5]))[0])
    return x_left_of_8, x_left_of_8 + share * grid.spacing_mm[2], 8


@pytest.mark.parametrize(("share", "included"), [(0.4, False), (0.6, True)])
def test_an_activity_voxel_is_in_the_roi_when_half_of_it_is_covered(study: PhantomStudy, share: float,
                                                                    included: bool) -> None:
    """The ROI's right edge cuts an emission voxel at 40 % or 60 % of its width. Sampling CT pixel
    centres would count half of that voxel's CT pixels in both cases (and keep it); the covered
    fraction keeps it only at 60 %."""
    ct = ct_volume(study.ct)
    grid = activity_volume(study.activity).grid
    _, x_edge, column = _x_edge(study, share)
    x_start = float(grid.index_to_patient(np.array([0.0, 0.0, 3.5]))[0])
    y0, y1 = (float(grid.index_to_patient(np.array([0.0, r, 0.0]))[1]) for r in (5.5, 9.5))
    z0, z1 = (float(grid.index_to_patient(np.array([s, 0.0, 0.0]))[2]) for s in (5.5, 9.5))

    def draw(z: float) -> list[Contour]:
        return [(_square(x_start, x_edge, y0, y1), "CLOSED_PLANAR")] if z0 < z < z1 else []

    [voi] = rtstruct_vois(rtstruct(study.ct, {"box": draw}, study.frame_of_reference_uid), ct.grid, grid)
    assert bool(voi.mask[7, 7, column]) is included
    assert voi.voxel_count == 4 * 4 * (4 + int(included))  # slices 6-9, rows 6-9, columns 4-7 (+ 8)


def test_an_ellipsoid_roi_has_its_volume(study: PhantomStudy) -> None:
    ct = ct_volume(study.ct)
    grid = activity_volume(study.activity).grid
    ds = rtstruct(study.ct, {"Liver": ellipsoid_contours((0.0, 0.0, -120.0), (40.0, 30.0, 35.0))},
                  study.frame_of_reference_uid)
    [voi] = rtstruct_vois(ds, ct.grid, grid)
    assert voi.role == "liver" and voi.source == "rtstruct"
    assert voi.voxel_count * grid.voxel_volume_ml == pytest.approx(4 / 3 * np.pi * 4.0 * 3.0 * 3.5, rel=0.06)


def test_an_open_contour_is_refused_naming_the_roi(study: PhantomStudy) -> None:
    ct = ct_volume(study.ct)
    grid = activity_volume(study.activity).grid

    def draw(z: float) -> list[Contour]:
        return [(ellipse((0.0, 0.0), (20.0, 20.0))[:40], "OPEN_PLANAR")] if -130 < z < -110 else []

    with pytest.raises(SegmentationError, match=r"'rim' contour 1 is OPEN_PLANAR ContourGeometricType") as err:
        rtstruct_vois(rtstruct(study.ct, {"rim": draw}, study.frame_of_reference_uid), ct.grid, grid)
    assert err.value.status == 422 and err.value.expression == "segmentationSeriesUid"


def test_a_tilted_closed_contour_is_refused(study: PhantomStudy) -> None:
    ct = ct_volume(study.ct)
    grid = activity_volume(study.activity).grid
    ds = rtstruct(study.ct, {"Liver": ellipsoid_contours((0.0, 0.0, -120.0), (40.0, 30.0, 35.0))},
                  study.frame_of_reference_uid)
    contour = ds.ROIContourSequence[0].ContourSequence[3]
    xyz = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
    xyz[:, 2] += np.linspace(0.0, 12.0, len(xyz))
    contour.ContourData = [f"{v:.3f}" for v in xyz.ravel()]
    with pytest.raises(SegmentationError, match=r"'Liver' contour 4 does not lie in one image plane"):
        rtstruct_vois(ds, ct.grid, grid)


def test_an_roi_in_another_frame_of_reference_is_refused_by_name(study: PhantomStudy) -> None:
    ct = ct_volume(study.ct)
    grid = activity_volume(study.activity).grid
    ds = rtstruct(study.ct, {"Liver": ellipsoid_contours((0.0, 0.0, -120.0), (40.0, 30.0, 35.0))},
                  study.frame_of_reference_uid)
    assert rtstruct_vois(ds, ct.grid, grid)
    ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = "1.2.3.4.5.6.7"
    with pytest.raises(SegmentationError, match=r"ROI 'Liver' is in another Frame of Reference \(1\.2\.3\.4\.5\.6\.7"):
        rtstruct_vois(ds, ct.grid, grid)
