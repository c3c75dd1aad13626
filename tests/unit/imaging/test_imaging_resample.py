"""HU → density table, resampling between grids, CT matching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dosimetry.imaging.errors import CtMismatchError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import (
    SOFT_TISSUE_DENSITY_G_PER_ML,
    check_ct_matches,
    ct_coverage,
    density_on_grid,
    hu_to_density_g_per_ml,
    resample_mask,
    resample_scalar,
)
from services.dosimetry.imaging.volume import ScalarVolume

AXIAL = np.array([1.0, 0, 0, 0, 1, 0])


def _grid(n: int, spacing: float, origin: tuple[float, float, float] = (0.0, 0.0, 0.0), for_uid: str = "1.2.3") -> Grid:
    return Grid.from_dicom((n, n, n), np.array(origin), AXIAL, (spacing, spacing), np.array([0, 0, spacing]), for_uid)


def _fine_for(coarse_n: int, h: float, origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Grid:
    """A grid twice as fine covering exactly the same voxels as the coarse one."""
    o = tuple(v - h / 4 for v in origin)
    return _grid(2 * coarse_n, h / 2, (o[0], o[1], o[2]))


# Published points (Schneider 1996 fit as in k-Wave; air from NIST), repeated from the docs.
@pytest.mark.parametrize(("hu", "rho"), [(-1000, 0.0012), (-70, 0.9483), (98, 1.1009), (260, 1.1836),
                                         (3000, 2.9990), (5000, 2.9990), (-2000, 0.0012)])
def test_density_table_points(hu: float, rho: float) -> None:
    assert float(hu_to_density_g_per_ml(np.array([hu]))[0]) == pytest.approx(rho, abs=1e-4)


def test_density_matches_the_soft_tissue_fit_between_points() -> None:
    # Schneider/k-Wave soft-tissue segment: ρ = (0.90827·(HU+1000) + 103.615) / 1000
    for hu in (-50.0, 0.0, 40.0, 60.0):
        expected = (0.9082709691264 * (hu + 1000) + 103.6151457847139) / 1000
        assert float(hu_to_density_g_per_ml(np.array([hu]))[0]) == pytest.approx(expected, abs=2e-4)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-3000, 6000), min_size=2, max_size=20))
def test_density_is_monotonic_and_bounded(hus: list[float]) -> None:
    values = np.sort(np.array(hus))
    rho = hu_to_density_g_per_ml(values)
    assert np.all(np.diff(rho) >= 0)
    assert np.all((rho >= 0.0012) & (rho <= 3.0))


def test_box_average_of_a_twice_finer_grid_is_the_block_mean() -> None:
    rng = np.random.default_rng(0)
    coarse = _grid(6, 4.0, (10.0, -5.0, 100.0))
    fine = _fine_for(6, 4.0, (10.0, -5.0, 100.0))
    values = rng.normal(size=fine.shape)
    out = resample_scalar(ScalarVolume(values, fine, "x"), coarse, cval=-1.0)
    block = values.reshape(6, 2, 6, 2, 6, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(out, block, atol=1e-5)


def test_identity_resampling_keeps_values_and_outside_is_cval() -> None:
    rng = np.random.default_rng(1)
    grid = _grid(5, 3.0)
    values = rng.normal(size=grid.shape)
    np.testing.assert_allclose(resample_scalar(ScalarVolume(values, grid, "x"), grid, cval=0.0), values, atol=1e-5)
    moved = _grid(5, 3.0, (0.0, 0.0, 6.0))  # two slices further along z
    out = resample_scalar(ScalarVolume(values, grid, "x"), moved, cval=-7.0)
    np.testing.assert_allclose(out[:3], values[2:], atol=1e-5)
    np.testing.assert_array_equal(out[3:], -7.0)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_masks_upsampled_to_the_ct_come_back_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    coarse = _grid(5, 4.42, (-20.0, 3.0, -100.0))
    fine = _fine_for(5, 4.42, (-20.0, 3.0, -100.0))
    mask = rng.random(coarse.shape) < 0.4
    upsampled = np.repeat(np.repeat(np.repeat(mask, 2, 0), 2, 1), 2, 2)
    np.testing.assert_array_equal(resample_mask(upsampled, fine, coarse), mask)


def test_mask_majority_vote() -> None:
    coarse = _grid(2, 4.0)
    fine = _fine_for(2, 4.0)
    upsampled = np.zeros(fine.shape, dtype=bool)
    upsampled[0:2, 0:2, 0] = True  # 4 of the 8 sub-voxels of coarse voxel (0,0,0): kept
    upsampled[2:4, 2:4, 2] = True  # 2 of 8 of coarse voxel (1,1,1)... plus 2 → 4: kept
    upsampled[2, 2, 3] = True
    upsampled[0, 2, 2] = True  # 1 of 8 of coarse voxel (0,1,1): dropped
    out = resample_mask(upsampled, fine, coarse)
    assert out[0, 0, 0] and out[1, 1, 1] and not out[0, 1, 1]


def test_ct_in_another_frame_of_reference_is_refused() -> None:
    with pytest.raises(CtMismatchError, match="another Frame of Reference") as err:
        check_ct_matches(_grid(10, 2.0, for_uid="1.2.3"), _grid(5, 4.0, for_uid="9.9.9"))
    assert err.value.expression == "FrameOfReferenceUID" and err.value.status == 422


def test_ct_overlap_threshold() -> None:
    activity = _grid(10, 4.0)
    assert check_ct_matches(_grid(20, 2.0, (-1.0, -1.0, -1.0)), activity) == pytest.approx(1.0)
    # shifted by 16 mm of 40 mm along z: 60 % still covered → accepted
    assert check_ct_matches(_grid(20, 2.0, (-1.0, -1.0, 15.0)), activity) == pytest.approx(0.6, abs=0.1)
    with pytest.raises(CtMismatchError, match="covers 0%"):
        check_ct_matches(_grid(20, 2.0, (-1.0, -1.0, 500.0)), activity)


@settings(max_examples=50, deadline=None)
@given(st.floats(1.0, 6.0), st.floats(0.5, 3.0), st.floats(-10.0, 10.0), st.booleans())
def test_separable_average_conserves_the_integral(source_mm: float, ratio: float, shift_mm: float,
                                                  flip: bool) -> None:
    """A target grid that covers the whole source keeps Σ value × voxel volume (cval 0),
    whatever the spacings, the offset, and a flipped row axis."""
    rng = np.random.default_rng(7)
    source = _grid(6, source_mm, (0.0, 0.0, 0.0))
    values = rng.random(source.shape)
    target_mm = source_mm * ratio
    n_target = int(np.ceil(6 * source_mm / target_mm)) + 4
    origin = -2 * target_mm + shift_mm % target_mm - target_mm
    target = Grid.from_dicom((n_target, n_target, n_target), np.array([origin, origin, origin]), AXIAL,
                             (target_mm, target_mm), np.array([0, 0, target_mm]), "1.2.3")
    if flip:  # rows run the other way: same voxels, mirrored index
        affine = target.affine.copy()
        affine[:3, 3] += affine[:3, 1] * (n_target - 1)
        affine[:3, 1] *= -1
        target = Grid(target.shape, affine, "1.2.3")
    out = resample_scalar(ScalarVolume(values, source, "x"), target, cval=0.0)
    assert out.sum() * target.voxel_volume_ml == pytest.approx(values.sum() * source.voxel_volume_ml, rel=1e-4)


def test_oblique_grids_use_sub_samples_and_agree_with_the_exact_average() -> None:
    """A target rotated by 0.2° takes the sub-sample path; on a smooth field it must agree with
    the exact average on the unrotated grid."""
    fine = _grid(40, 1.0, (-20.0, -20.0, -20.0))
    k, j, i = np.meshgrid(*(np.arange(40.0),) * 3, indexing="ij")
    values = np.sin(k / 9.0) + np.cos(j / 7.0) + i / 40.0
    straight = _grid(8, 3.0, (-10.0, -10.0, -10.0))
    angle = np.deg2rad(0.2)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = straight.affine.copy()
    affine[:3, :3] = rot @ affine[:3, :3]
    oblique = Grid(straight.shape, affine, "1.2.3")
    exact = resample_scalar(ScalarVolume(values, fine, "x"), straight, cval=0.0)
    sampled = resample_scalar(ScalarVolume(values, fine, "x"), oblique, cval=0.0)
    np.testing.assert_allclose(sampled, exact, atol=0.03)


# The four segments of the Schneider et al. 1996 fit as published with k-Wave hounsfield2density
# (ρ in kg/m³ of x = HU + 1000; breakpoints x = 930, 1098, 1260): the table must reproduce each
# segment exactly above −70 HU (it is linear between its breakpoints) and stay within 0.01 g/mL of
# the first segment between air and −70 HU, where the table ends at air instead of −5.7 kg/m³.
_FIT = ((-70.0, 98.0, 0.9082709691264, 103.6151457847139), (98.0, 260.0, 0.5108369316599, 539.9977189228704),
        (260.0, 3000.0, 0.6625370912451, 348.8555178455294))


@pytest.mark.parametrize(("lo", "hi", "slope", "intercept"), _FIT)
def test_density_table_reproduces_each_published_fit_segment(lo: float, hi: float, slope: float,
                                                             intercept: float) -> None:
    hus = np.linspace(lo, hi, 9)
    expected = (slope * (hus + 1000.0) + intercept) / 1000.0
    np.testing.assert_allclose(hu_to_density_g_per_ml(hus), expected, atol=2e-6)


def test_density_below_minus_70_hu_follows_the_first_fit_segment_to_air() -> None:
    hus = np.linspace(-950.0, -70.0, 12)
    fit = (1.025793065681423 * (hus + 1000.0) - 5.680404011488714) / 1000.0
    np.testing.assert_allclose(hu_to_density_g_per_ml(hus), fit, atol=0.01)


def test_density_outside_the_ct_is_soft_tissue_and_coverage_says_where() -> None:
    activity = _grid(10, 4.0)
    ct_grid = _grid(20, 2.0, (-1.0, -1.0, 16.0))  # covers z ≥ 15 mm of the activity's −2…38 mm
    ct = ScalarVolume(np.full(ct_grid.shape, 0.0, dtype=np.float32), ct_grid, "HU")  # water, 0 HU
    density = density_on_grid(ct, activity)
    coverage = ct_coverage(ct_grid, activity)
    water = float(hu_to_density_g_per_ml(np.array([0.0]))[0])
    assert coverage[0].max() == 0.0 and coverage[-1].min() == pytest.approx(1.0)
    np.testing.assert_allclose(density[0], SOFT_TISSUE_DENSITY_G_PER_ML, rtol=1e-6)
    np.testing.assert_allclose(density[-1], water, rtol=1e-6)
    # a partly covered slice mixes the two by its covered share
    k = int(np.argmax((coverage[:, 5, 5] > 0) & (coverage[:, 5, 5] < 1)))
    c = float(coverage[k, 5, 5])
    assert 0 < c < 1
    assert density[k, 5, 5] == pytest.approx(c * water + (1 - c) * SOFT_TISSUE_DENSITY_G_PER_ML, rel=1e-5)
    # air stays available to a caller that wants it
    assert density_on_grid(ct, activity, outside_g_per_ml=0.0012)[0, 0, 0] == pytest.approx(0.0012)


def _overlap_matrix(n_target: int, n_source: int, scale: float, offset: float) -> np.ndarray:
    """Reference weights: share of target voxel t (source coordinates scale·t + offset ± |scale|/2)
    covered by source voxel u ([u − ½, u + ½]), written out voxel pair by voxel pair."""
    w = np.zeros((n_target, n_source))
    for t in range(n_target):
        lo, hi = scale * t + offset - abs(scale) / 2, scale * t + offset + abs(scale) / 2
        for u in range(n_source):
            w[t, u] = max(0.0, min(hi, u + 0.5) - max(lo, u - 0.5)) / abs(scale)
    return w


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 40), st.floats(0.9, 5.0), st.floats(-12.0, 12.0), st.floats(-5.0, 5.0), st.booleans())
def test_separable_average_equals_the_overlap_weighted_mean(n_k: int, ratio: float, shift_mm: float,
                                                            cval: float, flip: bool) -> None:
    """Against the overlap matrices applied along each axis, for uneven ratios, offsets that put
    target voxels partly or wholly outside the source, flips, and source stacks longer than one
    block of slices (n_k up to 40)."""
    rng = np.random.default_rng(n_k)
    shape = (n_k, 9, 7)
    source = Grid.from_dicom(shape, np.array([0.0, 0.0, 0.0]), AXIAL, (1.0, 1.0), np.array([0, 0, 1.0]), "1.2.3")
    values = rng.normal(size=shape).astype(np.float32)
    target_shape = (int(n_k / ratio) + 2, 4, 3)
    target = Grid.from_dicom(target_shape, np.array([shift_mm, -1.0, 0.3]), AXIAL, (ratio, 2.5),
                             np.array([0, 0, ratio]), "1.2.3")
    if flip:
        affine = target.affine.copy()
        affine[:3, 3] += affine[:3, 2] * (target_shape[0] - 1)
        affine[:3, 2] *= -1
        target = Grid(target.shape, affine, "1.2.3")
    matrix = np.linalg.inv(source.affine) @ target.affine
    w = [_overlap_matrix(target_shape[a], shape[a], matrix[a, a], matrix[a, 3]) for a in range(3)]
    expected = np.einsum("ku,jv,iw,uvw->kji", w[0], w[1], w[2], values.astype(np.float64) - cval) + cval
    out = resample_scalar(ScalarVolume(values, source, "x"), target, cval=cval)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    coverage = ct_coverage(source, target)
    np.testing.assert_allclose(coverage, np.einsum("ku,jv,iw,uvw->kji", w[0], w[1], w[2], np.ones(shape)),
                               atol=1e-9)


def test_density_on_an_aligned_grid_holds_no_ct_sized_float_copy() -> None:
    """HU → density and the reduction run block by block: the peak of new numpy memory stays
    well under one float32 copy of the CT (the CT itself is the caller's)."""
    import tracemalloc

    ct_grid = Grid.from_dicom((160, 320, 320), np.array([0.0, 0.0, 0.0]), AXIAL, (1.0, 1.0),
                              np.array([0, 0, 2.0]), "1.2.3")
    ct = ScalarVolume(np.random.default_rng(0).normal(0, 50, ct_grid.shape).astype(np.float32), ct_grid, "HU")
    activity = Grid.from_dicom((80, 80, 80), np.array([1.5, 1.5, 1.0]), AXIAL, (4.0, 4.0),
                               np.array([0, 0, 4.0]), "1.2.3")
    tracemalloc.start()
    density = density_on_grid(ct, activity)
    coverage = ct_coverage(ct_grid, activity)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.5 * ct.values.nbytes
    water = float(hu_to_density_g_per_ml(np.array([0.0]))[0])
    assert abs(float(density[coverage == 1].mean()) - water) < 0.01


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-3000, 6000, width=32), min_size=1, max_size=50))
def test_block_density_is_the_table_interpolation(hus: list[float]) -> None:
    """The per-block HU → density (whole-HU table with slopes) is the table's interpolation for
    any CT number, whole or not, inside and beyond the table."""
    from services.dosimetry.imaging.resample import _block_density

    values = np.array([*hus, -1000.0, -70.0, 98.0, 260.0, 3000.0, -69.5, 97.25], dtype=np.float32)
    np.testing.assert_allclose(_block_density(values), hu_to_density_g_per_ml(values.astype(np.float64)),
                               rtol=2e-6, atol=1e-6)
    whole = np.round(values)  # the usual CT: whole CT numbers take the table lookup alone
    np.testing.assert_allclose(_block_density(whole), hu_to_density_g_per_ml(whole.astype(np.float64)),
                               rtol=2e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 11), st.integers(0, 11), st.integers(1, 6), st.floats(1.3, 3.7), st.floats(-3.0, 3.0))
def test_mask_fraction_of_its_bounding_box_is_the_whole_mask_fraction(k0: int, j0: int, size: int, ratio: float,
                                                                      shift: float) -> None:
    """resample_mask averages only the mask's bounding box: the result must be the one of the
    overlap-weighted mean over the whole source."""
    from services.dosimetry.imaging.resample import _index_matrix, _separable_average

    rng = np.random.default_rng(k0 * 31 + j0)
    source = Grid.from_dicom((14, 13, 12), np.array([0.0, 0.0, 0.0]), AXIAL, (1.0, 1.0), np.array([0, 0, 1.0]),
                             "1.2.3")
    mask = np.zeros(source.shape, dtype=bool)
    mask[k0:k0 + size, j0:j0 + size, 2:2 + size] = rng.random((size, size, size))[: 14 - k0, : 13 - j0] > 0.3
    target = Grid.from_dicom((7, 7, 7), np.array([shift, shift / 2, -shift]), AXIAL, (ratio, ratio),
                             np.array([0, 0, ratio]), "1.2.3")
    whole = _separable_average(mask, _index_matrix(source, target), target.shape, 0.0) >= 0.5 - 1e-6
    np.testing.assert_array_equal(resample_mask(mask, source, target), whole)


@pytest.mark.parametrize("oblique", [False, True])
def test_a_mask_is_moved_with_one_grid_transform(oblique: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """resample_mask and resample_mask_box each work out the target → source index matrix (a 4×4
    inverse, once per segment of a SEG) once, on parallel and on oblique grids; the box gives the
    full mask's voxels."""
    from services.dosimetry.imaging import resample

    source = _grid(12, 1.0)
    target = _grid(5, 2.5, (0.4, -0.3, 0.2))
    if oblique:
        angle = np.deg2rad(0.2)
        affine = target.affine.copy()
        affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                                   [0, 0, 1]]) @ affine[:3, :3]
        target = Grid(target.shape, affine, "1.2.3")
    mask = np.zeros(source.shape, dtype=bool)
    mask[2:9, 3:10, 1:8] = np.random.default_rng(5).random((7, 7, 7)) > 0.3
    calls: list[tuple[Grid, Grid]] = []
    index_matrix = resample._index_matrix

    def counted(src: Grid, tgt: Grid) -> np.ndarray:
        calls.append((src, tgt))
        return index_matrix(src, tgt)

    monkeypatch.setattr(resample, "_index_matrix", counted)
    whole = resample.resample_mask(mask, source, target)
    assert len(calls) == 1
    calls.clear()
    boxed = resample.resample_mask_box(mask[2:9, 3:10, 1:8], (2, 3, 1), source, target)
    assert len(calls) == 1
    assert whole.any() and not whole.all()
    np.testing.assert_array_equal(boxed, whole)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), start=st.tuples(*[st.integers(-6, 30)] * 3),
       size=st.tuples(*[st.integers(1, 12)] * 3), spacing=st.sampled_from([0.7, 1.0, 2.5, 4.0]),
       origin=st.tuples(*[st.floats(-8.0, 8.0)] * 3), flip=st.booleans())
def test_a_mask_box_is_averaged_onto_the_target_voxels_it_reaches_alone(
        seed: int, start: tuple[int, int, int], size: tuple[int, int, int], spacing: float,
        origin: tuple[float, float, float], flip: bool) -> None:
    """A segment's box (a tumour's few voxels) is averaged onto the sub-grid of target voxels it
    reaches, the rest left 0: the same voxels as averaging it onto the whole target, wherever the
    box lies (partly or wholly outside the target included) and whichever way an axis runs."""
    from services.dosimetry.imaging import resample

    source = _grid(24, 1.0)
    target = _grid(9, spacing, origin)
    if flip:  # the target's columns run the other way (a flipped axis)
        affine = target.affine.copy()
        affine[:3, 3] += affine[:3, 2] * (target.shape[2] - 1)
        affine[:3, 2] = -affine[:3, 2]
        target = Grid(target.shape, affine, "1.2.3")
    box = np.random.default_rng(seed).random(size) > 0.4
    got = resample.resample_mask_box(box, start, source, target)
    matrix = resample._index_matrix(source, target).copy()
    for axis, first in enumerate(start):
        matrix[axis, 3] -= first
    whole_target = resample._separable_average(box, matrix, target.shape, 0.0) >= 0.5 - 1e-6
    assert got.shape == target.shape and got.dtype == np.bool_
    np.testing.assert_array_equal(got, whole_target)


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12)),
       spacing=st.tuples(st.floats(0.5, 6.0), st.floats(0.5, 6.0), st.floats(0.5, 6.0)),
       origin=st.tuples(st.floats(-30.0, 30.0), st.floats(-30.0, 30.0), st.floats(-30.0, 30.0)),
       least=st.sampled_from([0.5, 0.25, 1.0]), oblique=st.booleans())
def test_the_voxels_outside_the_ct_are_those_its_coverage_leaves_below_the_share(
        shape: tuple[int, int, int], spacing: tuple[float, float, float], origin: tuple[float, float, float],
        least: float, oblique: bool) -> None:
    """``outside_ct`` (no float volume of shares when the axes are parallel) gives the voxels
    ``ct_coverage < least`` gives: CT shorter, narrower, shifted or tilted against the target."""
    from services.dosimetry.imaging.ct_density import outside_ct

    ct = Grid.from_dicom((8, 10, 9), np.array([0.0, 0.0, 0.0]), AXIAL, (2.0, 2.5), np.array([0, 0, 3.0]), "1.2.3")
    orientation = np.array([1.0, 0, 0, 0, np.cos(0.3), np.sin(0.3)]) if oblique else AXIAL
    normal = np.cross(orientation[:3], orientation[3:]) * spacing[0]
    target = Grid.from_dicom(shape, np.array(origin), orientation, (spacing[1], spacing[2]), normal, "1.2.3")
    np.testing.assert_array_equal(outside_ct(ct, target, least), ct_coverage(ct, target) < least)
