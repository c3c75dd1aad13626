"""The direct SEG reader (:mod:`services.dosimetry.imaging.seg_frames`) against highdicom's.

Oracle: the same SEG read by highdicom (``seg_vois(..., direct=False)``, and highdicom's own
``get_volume`` for the masks and grid on the SEG's grid). For every SEG shape the other SEG tests
write (phantom SEGs, omitted and kept empty frames, one segment with its number shared, one
instance per segment, slices 1.0667 mm apart), for frames that do not start on a byte
(7 × 9 pixels), frames out of order, a stack running against the slice normal, and orientation
and pixel spacing given in every frame (the same numbers) instead of shared, the direct
reader must be the one used (highdicom's reader is made to fail) and give the same voxels, grid,
labels, roles, codes and TrackingUIDs on the SEG's own grid and on the coarser activity grid.
SEGs it does not take (FRACTIONAL, deflated, irregular slices, a per-frame orientation or pixel
spacing that differs between frames or is also shared) and malformed ones go to highdicom and
give the same VOIs or the same named refusal.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from copy import deepcopy
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.coding import Code
from pydicom.uid import DeflatedExplicitVRLittleEndian

from services.dosimetry.imaging import seg as seg_module
from services.dosimetry.imaging.errors import SegmentationError
from services.dosimetry.imaging.frame_groups import PER_FRAME, frame_facts
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.phantoms import (
    PhantomStudy,
    build_study,
    dataset_bytes,
    two_compartment_liver,
)
from services.dosimetry.imaging.seg_frames import mask_on_grid, read_frames, segment_box
from services.dosimetry.imaging.volume import activity_volume, ct_volume
from tests.support.seg_pixels import seg_pixel_array

LIVER = ("normal liver", "tumour 1", "tumour 2")


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=3)


def _roundtrip(ds: Dataset) -> Dataset:
    return pydicom.dcmread(io.BytesIO(dataset_bytes(ds)))


def _on_ct(mask: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1), 2, axis=2)


def _seg(source: list[Dataset], arrays: list[np.ndarray], *, labels: list[str] | None = None, seg_type: str = "BINARY",
         omit_empty_frames: bool = True, series_uid: str | None = None) -> Dataset:
    """A SEG written by highdicom on ``source``, one segment per array (a tumour after the first)."""
    labels = labels or [f"segment {n}" for n in range(len(arrays))]
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=label,
        segmented_property_category=Code("91772007", "SCT", "Organ"),
        segmented_property_type=Code("10200004", "SCT", "Liver") if n == 1 else
        Code("108369006", "SCT", "Neoplasm"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL, tracking_uid=hd.UID(), tracking_id=label)
        for n, label in enumerate(labels, start=1)]
    pixels = seg_pixel_array(arrays, seg_type)
    return hd.seg.Segmentation(
        source_images=source, pixel_array=pixels, segmentation_type=seg_type, segment_descriptions=descriptions,
        series_instance_uid=series_uid or hd.UID(), series_number=20, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="0",
        omit_empty_frames=omit_empty_frames, max_fractional_value=200 if seg_type == "FRACTIONAL" else 255)


def _small_ct(study: PhantomStudy, slices: int, rows: int, columns: int, *, step_mm: float = 3.0,
              orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)) -> list[Dataset]:
    """``slices`` CT images of rows × columns pixels (2.0 × 1.5 mm) ``step_mm`` apart along the
    normal of ``orientation``, positions written to 0.01 mm."""
    template = study.ct[0]
    iop = np.array(orientation)
    normal = np.cross(iop[:3], iop[3:])
    out = []
    for k in range(slices):
        ds = deepcopy(template)
        ds.SOPInstanceUID = hd.UID()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = rows, columns
        ds.PixelSpacing = ["2.0", "1.5"]
        ds.ImageOrientationPatient = [f"{v:g}" for v in orientation]
        ds.ImagePositionPatient = [f"{v:.2f}" for v in np.array([-10.0, -12.0, -100.0]) + k * step_mm * normal]
        ds.SliceThickness = f"{step_mm:.4f}"
        ds.PixelData = np.full((rows, columns), 1024, dtype=np.uint16).tobytes()
        out.append(ds)
    return out


def _random_masks(shape: tuple[int, int, int], count: int, seed: int) -> list[np.ndarray]:
    """``count`` masks with blobs, empty slices before and after, and one slice empty inside."""
    rng = np.random.default_rng(seed)
    masks = []
    for n in range(count):
        mask = rng.random(shape) < 0.75
        mask[: 1 + n] = False
        mask[shape[0] - 1 - n:] = False
        mask[shape[0] // 2] = False
        masks.append(mask)
    return masks


def _target(grid: Grid, factor: float, shift_mm: float = 0.0) -> Grid:
    """A grid over the same volume with voxels ``factor`` times larger, moved by ``shift_mm``."""
    affine = grid.affine.copy()
    affine[:3, :3] *= factor
    affine[:3, 3] += shift_mm
    shape = tuple(max(1, int(np.ceil(n / factor))) for n in grid.shape)
    return Grid((shape[0], shape[1], shape[2]), affine, grid.frame_of_reference_uid)


def _refuse_highdicom(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kw: Any) -> Any:
        raise AssertionError("the SEG was read with highdicom, not directly")

    monkeypatch.setattr(seg_module, "_read", refuse)


def _assert_same_vois(direct: list[Any], reference: list[Any]) -> None:
    assert [v.name for v in direct] == [v.name for v in reference]
    for a, b in zip(direct, reference, strict=True):
        assert (a.role, a.source, a.code, a.tracking_uid) == (b.role, b.source, b.code, b.tracking_uid)
        assert a.mask.shape == b.mask.shape and a.mask.dtype == b.mask.dtype
        np.testing.assert_array_equal(a.mask, b.mask, err_msg=a.name)


def _assert_same_on_seg_grid(ds: Dataset) -> None:
    """Each segment's mask and the grid on the SEG's own grid equal highdicom's ``get_volume``."""
    frames = read_frames(ds)
    assert frames is not None
    seg = hd.seg.Segmentation.from_dataset(ds, copy=True)
    for number in seg.segment_numbers:
        volume = seg.get_volume(segment_numbers=[number], combine_segments=False, skip_overlap_checks=True)
        expected = np.asarray(volume.array)[..., 0].astype(bool)
        np.testing.assert_array_equal(frames.grid.affine, np.asarray(volume.affine))
        assert frames.grid.shape == expected.shape
        box = segment_box(frames, number)
        got = np.zeros(frames.grid.shape, dtype=bool)
        if box is not None:
            (k, r, c), size = box.start, box.mask.shape
            got[k:k + size[0], r:r + size[1], c:c + size[2]] = box.mask
        np.testing.assert_array_equal(got, expected, err_msg=f"segment {number}")


def _undefined_lengths(ds: Dataset, *, outer: bool = True) -> Dataset:
    """A copy whose sequences and items are written with undefined lengths and delimiters
    (PS3.5 7.5.1-7.5.2) instead of their byte counts: at every depth, or (``outer=False``) all
    but the Per-frame Functional Groups Sequence itself (pydicom reads a sequence of undefined
    length at once, one of defined length when it is first used)."""
    out = deepcopy(ds)

    def mark(dataset: Dataset) -> None:
        for element in dataset:
            if element.VR == "SQ":
                element.is_undefined_length = True
                for item in element.value:
                    item.is_undefined_length_sequence_item = True
                    mark(item)

    mark(out)
    if not outer:
        out[PER_FRAME].is_undefined_length = False
    return out


def _encodings(ds: Dataset) -> dict[str, bytes]:
    """``ds`` written as a PACS would send it: sequences of defined length; all but the Per-frame
    Functional Groups Sequence of undefined length; every one of undefined length (each written
    once: writing thousands of items is the slow part of these tests)."""
    return {"defined": dataset_bytes(ds), "inner undefined": dataset_bytes(_undefined_lengths(ds, outer=False)),
            "all undefined": dataset_bytes(_undefined_lengths(ds))}


def _read(encoded: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(encoded))


def _assert_same_facts(encoded: dict[str, bytes]) -> None:
    """The per-frame facts walked from the encoded bytes (defined and undefined lengths) equal
    those pydicom's datasets give."""
    read = _read(encoded["defined"])
    assert read.PerFrameFunctionalGroupsSequence  # pydicom's datasets from here on
    expected = frame_facts(read)
    assert expected is not None and len(expected) == int(read.NumberOfFrames)
    for walked in (_read(encoded["defined"]), _read(encoded["inner undefined"])):
        assert isinstance(walked.get_item(PER_FRAME), RawDataElement)
        assert frame_facts(walked) == expected
        assert isinstance(walked.get_item(PER_FRAME), RawDataElement)  # walked, not read by pydicom
    assert frame_facts(_read(encoded["all undefined"])) == expected


def _check_direct(ds: Dataset, targets: list[Grid], monkeypatch: pytest.MonkeyPatch) -> None:
    """Read directly (in memory and after a round trip through bytes) = read by highdicom."""
    _assert_same_on_seg_grid(ds)
    encoded = _encodings(ds)
    _assert_same_facts(encoded)
    for n, target in enumerate(targets):
        references = seg_module.seg_vois(_read(encoded["defined"]), target, direct=False)
        with monkeypatch.context() as patch:
            _refuse_highdicom(patch)
            # in memory and in both encodings on the first grid; as a PACS sends it on the others
            forms = [lambda: _read(encoded["defined"])]
            if n == 0:
                forms += [lambda: deepcopy(ds), lambda: _read(encoded["inner undefined"])]
            for form in forms:
                _assert_same_vois(seg_module.seg_vois(form(), target, copy=False), references)


def _check_fallback(ds: Dataset, targets: list[Grid]) -> None:
    """Not taken by the direct reader; the VOIs are highdicom's."""
    assert read_frames(ds) is None
    for target in targets:
        _assert_same_vois(seg_module.seg_vois(deepcopy(ds), target),
                          seg_module.seg_vois(deepcopy(ds), target, direct=False))


def _grids(study: PhantomStudy) -> list[Grid]:
    ct = ct_volume(study.ct).grid
    return [ct, activity_volume(study.activity).grid, _target(ct, 2.7, 3.1)]


# -- taken: the same VOIs -----------------------------------------------------------------------

def test_the_phantom_seg_is_read_directly_with_highdicoms_voxels(study: PhantomStudy,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert study.seg is not None
    _check_direct(study.seg, _grids(study), monkeypatch)


@pytest.mark.parametrize("omit_empty_frames", [True, False])
@pytest.mark.parametrize("segments", [1, 3])
def test_segs_with_and_without_empty_frames_are_read_directly(study: PhantomStudy, omit_empty_frames: bool,
                                                              segments: int, monkeypatch: pytest.MonkeyPatch) -> None:
    phantom = study.phantom
    arrays = [_on_ct(phantom.mask(*names)) for names in (LIVER, ("tumour 1",), ("tumour 2",))][:segments]
    ds = _seg(study.ct, arrays, labels=["liver", "tumour 1", "tumour 2"][:segments],
              omit_empty_frames=omit_empty_frames)
    if segments == 1:  # highdicom shares the one segment's number (PS3.3 C.7.6.16 allows it)
        assert "SegmentIdentificationSequence" in ds.SharedFunctionalGroupsSequence[0]
    assert len(ds.PerFrameFunctionalGroupsSequence) < len(study.ct) * segments or not omit_empty_frames
    _check_direct(ds, _grids(study), monkeypatch)


@pytest.mark.parametrize(("rows", "columns"), [(7, 9), (5, 5), (3, 8), (8, 8)])
def test_frames_that_do_not_start_on_a_byte_are_read_at_their_bit(study: PhantomStudy, rows: int, columns: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """7 × 9 = 63 pixels: frame f starts at bit 63·f (PS3.5 8.1.1), mostly inside a byte."""
    ct = _small_ct(study, 12, rows, columns)
    ds = _seg(ct, _random_masks((12, rows, columns), 3, seed=rows * columns), omit_empty_frames=False)
    grid = ct_volume(ct).grid
    _check_direct(ds, [grid, _target(grid, 1.7, 0.4)], monkeypatch)


def _permuted(ds: Dataset, order: list[int]) -> Dataset:
    """``ds`` with its frames (functional groups and packed pixels) in ``order``."""
    out = deepcopy(ds)
    n = int(ds.Rows) * int(ds.Columns)
    count = int(ds.NumberOfFrames)
    bits = np.unpackbits(np.frombuffer(ds.PixelData, dtype=np.uint8), bitorder="little")[:count * n].reshape(count, n)
    packed = np.packbits(bits[order].ravel(), bitorder="little").tobytes()
    out.PixelData = packed + b"\0" * (len(packed) % 2)
    out.PerFrameFunctionalGroupsSequence = DicomSequence([deepcopy(ds.PerFrameFunctionalGroupsSequence[i])
                                                          for i in order])
    return out


def test_frames_out_of_order_are_placed_by_their_positions(study: PhantomStudy,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ct = _small_ct(study, 10, 7, 9)
    ds = _seg(ct, _random_masks((10, 7, 9), 2, seed=5))
    order = list(np.random.default_rng(2).permutation(int(ds.NumberOfFrames)))
    shuffled = _permuted(ds, order)
    grid = ct_volume(ct).grid
    _check_direct(shuffled, [grid, _target(grid, 2.0)], monkeypatch)
    # the frames moved with their pixels: the same VOIs as in the written order
    _assert_same_vois(seg_module.seg_vois(shuffled, grid), seg_module.seg_vois(ds, grid))


def test_a_stack_against_the_slice_normal_is_read_directly(study: PhantomStudy,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Column direction −y: the normal is −z, the CT's slices run the other way."""
    ct = _small_ct(study, 9, 6, 11, orientation=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    ds = _seg(ct, _random_masks((9, 6, 11), 2, seed=9))
    grid = ct_volume(ct).grid
    _check_direct(ds, [grid, _target(grid, 1.5, -0.7)], monkeypatch)
    _check_direct(_permuted(ds, list(range(int(ds.NumberOfFrames)))[::-1]), [grid], monkeypatch)


def test_slices_1_0667_mm_apart_written_to_0_01_mm_are_read_directly(study: PhantomStudy,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ct = _small_ct(study, 96, 8, 8, step_mm=320.0 / 300)  # positions rounded to 0.01 mm drift within 1 %
    design = np.zeros((96, 8, 8), dtype=bool)
    design[12:84, 2:6, 1:7] = True
    lesion = np.zeros_like(design)
    lesion[80:92, 3:5, 3:5] = True
    ds = _seg(ct, [design, lesion], labels=["liver", "lesion"])
    grid = ct_volume(ct).grid
    _check_direct(ds, [grid, _target(grid, 1.0, 0.4)], monkeypatch)


def test_one_instance_per_segment_is_read_directly(study: PhantomStudy, monkeypatch: pytest.MonkeyPatch) -> None:
    series = hd.UID()
    phantom = study.phantom
    for n, (label, names) in enumerate((("liver", LIVER), ("tumour 1", ("tumour 1",))), start=1):
        ds = _seg(study.ct, [_on_ct(phantom.mask(*names))], labels=[label], series_uid=series)
        ds.InstanceNumber = n
        _check_direct(ds, _grids(study), monkeypatch)


def _sixteen_bits(ds: Dataset, extra: dict[int, int] | None = None) -> Dataset:
    """A copy of an 8-bit LABELMAP SEG with 16-bit pixels; ``extra``: flat pixel index → value."""
    out = deepcopy(ds)
    values = np.frombuffer(ds.PixelData, dtype=np.uint8)[:int(ds.NumberOfFrames) * int(ds.Rows) * int(ds.Columns)]
    values = values.astype("<u2")
    for index, value in (extra or {}).items():
        values[index] = value
    out.BitsAllocated, out.BitsStored, out.HighBit = 16, 16, 15
    out.PixelData = values.tobytes()
    return out


@pytest.mark.parametrize("omit_empty_frames", [True, False])
def test_a_labelmap_seg_is_read_directly(study: PhantomStudy, omit_empty_frames: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    phantom = study.phantom
    arrays = [_on_ct(phantom.mask(*names)) for names in (("normal liver",), ("tumour 1",), ("tumour 2",))]
    ds = _seg(study.ct, arrays, seg_type="LABELMAP", omit_empty_frames=omit_empty_frames)
    assert ds.BitsAllocated == 8
    _check_direct(ds, _grids(study), monkeypatch)
    _check_direct(_sixteen_bits(ds), _grids(study), monkeypatch)


def test_labelmap_frames_that_do_not_start_on_a_byte_are_read_directly(study: PhantomStudy,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ct = _small_ct(study, 11, 7, 9)
    masks = _random_masks((11, 7, 9), 3, seed=8)
    for a, b in ((0, 1), (0, 2), (1, 2)):  # a labelmap's segments do not overlap
        masks[b] &= ~masks[a]
    ds = _seg(ct, masks, seg_type="LABELMAP")
    grid = ct_volume(ct).grid
    _check_direct(ds, [grid, _target(grid, 1.0, 0.2)], monkeypatch)
    _check_direct(_sixteen_bits(ds), [grid], monkeypatch)


def test_a_labelmap_value_beyond_its_segments_is_read_as_the_reference_reads_it(study: PhantomStudy,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """One above the highest segment: background to both readers; further: highdicom cannot
    index it, so the direct reader leaves it to highdicom and both refuse it alike."""
    phantom = study.phantom
    arrays = [_on_ct(phantom.mask(*names)) for names in (("normal liver",), ("tumour 1",))]
    ds = _seg(study.ct, arrays, seg_type="LABELMAP")
    _check_direct(_sixteen_bits(ds, {0: 3, 5: 3}), _grids(study)[1:2], monkeypatch)
    beyond = _sixteen_bits(ds, {0: 4})
    assert read_frames(beyond) is None
    target = activity_volume(study.activity).grid
    messages = []
    for direct in (True, False):
        with pytest.raises(SegmentationError) as err:
            seg_module.seg_vois(deepcopy(beyond), target, direct=direct)
        messages.append(err.value.message)
    assert messages[0] == messages[1]


ORIENTATION, MEASURES = "PlaneOrientationSequence", "PixelMeasuresSequence"


def _geometry_per_frame(ds: Dataset, groups: tuple[str, ...] = (ORIENTATION, MEASURES)) -> Dataset:
    """A copy with the shared functional ``groups`` moved into every Per-frame Functional Groups
    item, the same in each (as some writers give the orientation and pixel spacing)."""
    out = deepcopy(ds)
    shared = out.SharedFunctionalGroupsSequence[0]
    for keyword in groups:
        for item in out.PerFrameFunctionalGroupsSequence:
            setattr(item, keyword, deepcopy(shared[keyword].value))
        delattr(shared, keyword)
    return out


def _labelmap_arrays(study: PhantomStudy) -> list[np.ndarray]:
    return [_on_ct(study.phantom.mask(*names)) for names in (("normal liver",), ("tumour 1",), ("tumour 2",))]


@pytest.mark.parametrize("groups", [(ORIENTATION,), (MEASURES,), (ORIENTATION, MEASURES)],
                         ids=lambda g: "+".join(g))
@pytest.mark.parametrize("seg_type", ["BINARY", "LABELMAP"])
def test_orientation_and_spacing_the_same_in_every_frame_are_read_directly(
        study: PhantomStudy, seg_type: str, groups: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-frame Plane Orientation / Pixel Measures, one value in every frame: highdicom's volume."""
    assert study.seg is not None
    written = study.seg if seg_type == "BINARY" else _seg(study.ct, _labelmap_arrays(study), seg_type="LABELMAP")
    ds = _geometry_per_frame(written, groups)
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert all(g not in shared and all(g in item for item in ds.PerFrameFunctionalGroupsSequence) for g in groups)
    _check_direct(ds, _grids(study), monkeypatch)


def test_per_frame_numbers_written_differently_but_equal_are_read_directly(study: PhantomStudy,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The frames are compared by number, as highdicom compares them ("1" and "1.000" are one value),
    here on a stack against the slice normal whose frames do not start on a byte; SliceThickness,
    which neither reader uses, may differ."""
    ct = _small_ct(study, 9, 7, 9, orientation=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    ds = _geometry_per_frame(_seg(ct, _random_masks((9, 7, 9), 2, seed=11)))
    items = ds.PerFrameFunctionalGroupsSequence
    items[1].PlaneOrientationSequence[0].ImageOrientationPatient = ["1.000", "0.0", "0", "0", "-1.0", "0.00"]
    measures = items[-1].PixelMeasuresSequence[0]
    measures.PixelSpacing = ["2.00", "1.500"]
    measures.SpacingBetweenSlices = "3.000"
    items[2].PixelMeasuresSequence[0].SliceThickness = "5.0"
    grid = ct_volume(ct).grid
    _check_direct(ds, [grid, _target(grid, 1.5, -0.7)], monkeypatch)


def test_a_segment_box_lands_where_the_full_mask_does_on_an_oblique_grid(study: PhantomStudy) -> None:
    """Oblique target: the box is put back into the full mask, which is resampled; the full mask
    is highdicom's volume (stacked along the normal, here against the CT's slice order)."""
    from services.dosimetry.imaging.resample import resample_mask

    ct = _small_ct(study, 12, 7, 9)
    ds = _seg(ct, _random_masks((12, 7, 9), 1, seed=4))
    frames = read_frames(ds)
    assert frames is not None
    box = segment_box(frames, 1)
    assert box is not None
    volume = hd.seg.Segmentation.from_dataset(ds, copy=True).get_volume(segment_numbers=[1], skip_overlap_checks=True)
    angle = np.radians(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    affine = frames.grid.affine.copy()
    affine[:3, :3] = rotation @ affine[:3, :3] * 1.6
    oblique = Grid((8, 5, 6), affine, frames.grid.frame_of_reference_uid)
    expected = resample_mask(np.asarray(volume.array)[..., 0].astype(bool), frames.grid, oblique)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(mask_on_grid(box, frames.grid, oblique), expected)


# -- not taken: highdicom reads them ---------------------------------------------------------

def test_a_fractional_seg_is_left_to_highdicom(study: PhantomStudy) -> None:
    phantom = study.phantom
    arrays = [_on_ct(phantom.mask(*names)) for names in (("normal liver",), ("tumour 1",))]
    _check_fallback(_seg(study.ct, arrays, seg_type="FRACTIONAL"), _grids(study))


def test_a_deflated_seg_is_left_to_highdicom(study: PhantomStudy) -> None:
    assert study.seg is not None
    buffer = io.BytesIO()
    deflated = deepcopy(study.seg)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated.save_as(buffer, enforce_file_format=True)
    _check_fallback(pydicom.dcmread(io.BytesIO(buffer.getvalue())), _grids(study))


def test_a_slice_spacing_given_per_frame_is_left_to_highdicom(study: PhantomStudy) -> None:
    """highdicom takes SpacingBetweenSlices from the frames when the shared item lacks it; here the
    Pixel Measures group is both shared and per frame, which the direct reader leaves to it."""
    assert study.seg is not None
    ds = deepcopy(study.seg)
    shared = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.PixelMeasuresSequence = DicomSequence([deepcopy(shared)])
    del shared.SpacingBetweenSlices
    _check_fallback(ds, _grids(study))


def _rotate_one_frame(ds: Dataset) -> None:
    """The last frame's orientation turned 2° about the slice normal (still orthonormal)."""
    plane = ds.PerFrameFunctionalGroupsSequence[-1].PlaneOrientationSequence[0]
    iop = np.array([float(v) for v in plane.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    angle = np.radians(2.0)

    def turn(v: np.ndarray) -> np.ndarray:  # Rodrigues' rotation about the normal
        return v * np.cos(angle) + np.cross(normal, v) * np.sin(angle) + normal * (normal @ v) * (1 - np.cos(angle))

    plane.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([turn(iop[:3]), turn(iop[3:])])]


def _orientation_off_in_the_eighth_digit(ds: Dataset) -> None:
    plane = ds.PerFrameFunctionalGroupsSequence[1].PlaneOrientationSequence[0]
    plane.ImageOrientationPatient = ["0.99999999", *plane.ImageOrientationPatient[1:]]


def _pixel_spacing_of_one_frame(ds: Dataset) -> None:
    measures = ds.PerFrameFunctionalGroupsSequence[-1].PixelMeasuresSequence[0]
    measures.PixelSpacing = [f"{float(v) * 1.01:.4f}" for v in measures.PixelSpacing]


def _slice_spacing_of_one_frame(ds: Dataset) -> None:
    measures = ds.PerFrameFunctionalGroupsSequence[-1].PixelMeasuresSequence[0]
    measures.SpacingBetweenSlices = f"{float(measures.SpacingBetweenSlices) * 1.5:.4f}"


def _no_orientation_in_a_frame(ds: Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence


def _no_pixel_spacing_in_a_frame(ds: Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence[2].PixelMeasuresSequence[0].PixelSpacing


def _slice_spacing_in_the_first_frame_only(ds: Dataset) -> None:
    for item in ds.PerFrameFunctionalGroupsSequence[1:]:
        del item.PixelMeasuresSequence[0].SpacingBetweenSlices


def _slice_spacing_without_a_value(ds: Dataset) -> None:
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.PixelMeasuresSequence[0].SpacingBetweenSlices = None


def _orientation_shared_as_well(ds: Dataset) -> None:
    """Both places (PS3.3 C.7.6.16 allows one): highdicom takes the shared item."""
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = deepcopy(frame.PlaneOrientationSequence)


#: Per-frame geometry the direct reader leaves to highdicom, and what highdicom names when it
#: refuses it (None: highdicom reads it).
PER_FRAME_SPOILT: list[tuple[Callable[[Dataset], None], str | None]] = [
    (_rotate_one_frame, "consistent ImageOrientationPatient"),
    (_orientation_off_in_the_eighth_digit, "consistent ImageOrientationPatient"),
    (_pixel_spacing_of_one_frame, "consistent PixelSpacing"),
    (_slice_spacing_of_one_frame, "consistent SpacingBetweenSlices"),
    (_no_orientation_in_a_frame, "cannot be read"),
    (_no_pixel_spacing_in_a_frame, "cannot be read"),
    (_slice_spacing_in_the_first_frame_only, "cannot be read"),
    (_slice_spacing_without_a_value, "cannot be read"),
    (_orientation_shared_as_well, None)]


def _outcome(ds: Dataset, target: Grid, direct: bool) -> tuple[str, Any]:
    try:
        return "VOIs", [(v.name, int(v.mask.sum())) for v in seg_module.seg_vois(deepcopy(ds), target, direct=direct)]
    except SegmentationError as err:
        return type(err).__name__, err.message


@pytest.mark.parametrize(("spoil", "refusal"), PER_FRAME_SPOILT,
                         ids=lambda p: p.__name__.strip("_") if callable(p) else "read" if p is None else "refused")
@pytest.mark.parametrize("seg_type", ["BINARY", "LABELMAP"])
def test_per_frame_geometry_that_differs_between_frames_is_left_to_highdicom(
        study: PhantomStudy, seg_type: str, spoil: Callable[[Dataset], None], refusal: str | None) -> None:
    """Spoilt in pydicom's datasets, and written out again (the direct reader then walks its bytes):
    the caller gets what highdicom gives, its refusal by name or its VOIs."""
    assert study.seg is not None
    written = study.seg if seg_type == "BINARY" else _seg(study.ct, _labelmap_arrays(study), seg_type="LABELMAP")
    target = activity_volume(study.activity).grid
    ds = _roundtrip(_geometry_per_frame(written))
    assert read_frames(deepcopy(ds)) is not None  # unspoilt, it is read directly
    spoil(ds)
    for spoilt in (ds, _roundtrip(ds)):
        assert read_frames(deepcopy(spoilt)) is None
        reference = _outcome(spoilt, target, direct=False)
        assert _outcome(spoilt, target, direct=True) == reference
        if refusal is None:
            assert reference[0] == "VOIs"
        else:
            assert reference[0] == "SegmentationError" and refusal in reference[1]


def _frame_between_planes(ds: Dataset) -> None:
    plane = ds.PerFrameFunctionalGroupsSequence[-1].PlanePositionSequence[0]
    x, y, z = (float(v) for v in plane.ImagePositionPatient)
    plane.ImagePositionPatient = [f"{x:.4f}", f"{y:.4f}", f"{z + 0.4 * 17.68:.4f}"]


def _frame_shifted_in_plane(ds: Dataset) -> None:
    plane = ds.PerFrameFunctionalGroupsSequence[-1].PlanePositionSequence[0]
    x, y, z = (float(v) for v in plane.ImagePositionPatient)
    plane.ImagePositionPatient = [f"{x + 6.0:.4f}", f"{y:.4f}", f"{z:.4f}"]


def _duplicate_frame(ds: Dataset) -> None:
    ds.PerFrameFunctionalGroupsSequence[1] = deepcopy(ds.PerFrameFunctionalGroupsSequence[0])


def _no_position_in_a_frame(ds: Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence


def _no_dimension_values_in_a_frame(ds: Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence[2].FrameContentSequence[0].DimensionIndexValues


def _no_segment_in_a_frame(ds: Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence[2].SegmentIdentificationSequence


def _no_pixel_spacing(ds: Dataset) -> None:
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence


def _empty_slice_spacing(ds: Dataset) -> None:
    """SpacingBetweenSlices present with no value: highdicom then looks for it in every frame."""
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices = None


def _fewer_frames_counted(ds: Dataset) -> None:
    ds.NumberOfFrames = int(ds.NumberOfFrames) - 1


def _short_pixel_data(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]


def _unknown_segment(ds: Dataset) -> None:
    ds.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 9


def _no_frame_of_reference(ds: Dataset) -> None:
    del ds.FrameOfReferenceUID


def _unnamed_source_image(ds: Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence[3].DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID


def _unnamed_referenced_instance(ds: Dataset) -> None:
    del ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[1].ReferencedSOPInstanceUID


def _unnamed_referenced_series(ds: Dataset) -> None:
    del ds.ReferencedSeriesSequence[0].SeriesInstanceUID


MALFORMED: list[Callable[[Dataset], None]] = [
    _frame_between_planes, _frame_shifted_in_plane, _duplicate_frame, _no_position_in_a_frame,
    _no_dimension_values_in_a_frame, _no_segment_in_a_frame, _no_pixel_spacing, _empty_slice_spacing,
    _fewer_frames_counted, _short_pixel_data, _unknown_segment, _no_frame_of_reference, _unnamed_source_image,
    _unnamed_referenced_instance, _unnamed_referenced_series]


@pytest.mark.parametrize("spoil", MALFORMED, ids=lambda f: f.__name__.strip("_"))
def test_a_malformed_seg_is_left_to_highdicom_and_refused_alike(study: PhantomStudy,
                                                                spoil: Callable[[Dataset], None]) -> None:
    """Spoilt in pydicom's datasets, and written out again (the direct reader then walks its bytes)."""
    assert study.seg is not None
    target = activity_volume(study.activity).grid
    ds = _roundtrip(study.seg)
    assert read_frames(deepcopy(ds)) is not None  # unspoilt, it is read directly
    spoil(ds)
    for spoilt in (ds, _roundtrip(ds)):
        assert read_frames(deepcopy(spoilt)) is None
        outcomes = []
        for direct in (True, False):
            try:
                outcomes.append(("VOIs", [(v.name, int(v.mask.sum())) for v in
                                          seg_module.seg_vois(deepcopy(spoilt), target, direct=direct)]))
            except SegmentationError as err:
                outcomes.append((type(err).__name__, err.message))
        assert outcomes[0] == outcomes[1]


def test_an_empty_segment_is_refused_by_name_by_both_readers(study: PhantomStudy) -> None:
    phantom = study.phantom
    ds = _seg(study.ct, [_on_ct(phantom.mask(*LIVER)), np.zeros(_on_ct(phantom.mask(*LIVER)).shape, dtype=bool)],
              labels=["liver", "nothing"], omit_empty_frames=False)
    target = activity_volume(study.activity).grid
    assert read_frames(ds) is not None
    messages = []
    for direct in (True, False):
        with pytest.raises(SegmentationError, match="segment 2 'nothing' has no pixel set") as err:
            seg_module.seg_vois(deepcopy(ds), target, direct=direct)
        messages.append(err.value.message)
    assert messages[0] == messages[1]
