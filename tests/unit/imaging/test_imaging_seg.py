"""DICOM SEG as highdicom writes it, read through the pipeline: one or several segments, with
and without empty frames, binary, fractional and LABELMAP, one or several instances per series,
and slice spacings that are not round numbers; each with the local-deposition (LDM) and the
kernel (DVK) dose.

Reference for LDM (local deposition method, the EANM standard for voxel dosimetry): the mean dose of a VOI whose voxels share one
density is D = C·A·f/(N·V·ρ), with f the VOI's share of all counts, N its voxel count, V the
voxel volume and ρ the density of its CT number (Schneider 1996 fit, repeated here from the
publication: ρ = (0.9082709691264·(HU + 1000) + 103.6151457847139) kg/m³ for −70 < HU ≤ 98).
The phantom is an NM study with integer counts and a noise-free CT, so the only deviation
from that value is floating-point rounding; a VOI one voxel larger or smaller moves it by
more than 0.1 %. Reference for DVK: the kernel dose does not depend on the VOIs, so a VOI's
Dmean must be the mean of the job's dose map over the design voxels of its compartments
(float32 dose: rel 1e-5); one slice off moves a tumour's by > 20 %.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from services.dosimetry.imaging.errors import SegmentationError
from services.dosimetry.imaging.phantoms import PhantomStudy, build_study, two_compartment_liver
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from services.dosimetry.imaging.voi import seg_vois
from services.dosimetry.imaging.volume import ct_volume
from tests.support.memory_dicomweb import MemoryDicomweb
from tests.support.seg_pixels import seg_pixel_array

C_GY_KG_PER_GBQ = 49.67  # EANM 2022 dose constant
ACTIVITY_GBQ = 1.5
LIVER = ("normal liver", "tumour 1", "tumour 2")

_TYPES = {"liver": ("10200004", "Liver"), "tumour": ("108369006", "Neoplasm")}


def _rho_g_per_ml(hu: float) -> float:
    return (0.9082709691264 * (hu + 1000.0) + 103.6151457847139) / 1000.0


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return build_study(two_compartment_liver(n=24, voxel_mm=8.84), "NM", seed=11, with_seg=False, ct_noise_hu=0.0)


def _analytic_dmean(study: PhantomStudy, names: tuple[str, ...]) -> float:
    phantom = study.phantom
    mask = phantom.mask(*names)
    mass_kg = int(mask.sum()) * phantom.voxel_ml * _rho_g_per_ml(60.0) / 1000.0
    return C_GY_KG_PER_GBQ * ACTIVITY_GBQ * phantom.activity_fraction(*names) / mass_kg


def _on_ct(mask: np.ndarray) -> np.ndarray:
    """An emission-grid mask on the CT (each emission voxel is 2×2×2 CT voxels)."""
    return np.repeat(np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1), 2, axis=2)


def _description(number: int, label: str, kind: str) -> Any:
    code, meaning = _TYPES[kind]
    category = Code("91772007", "SCT", "Organ") if kind == "liver" else Code("49755003", "SCT",
                                                                            "Morphologically Abnormal Structure")
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=category,
        segmented_property_type=Code(code, "SCT", meaning), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)


def _seg(study: PhantomStudy, segments: list[tuple[str, str, np.ndarray]], *, seg_type: str = "BINARY",
         omit_empty_frames: bool = True, instance: int = 1, series_uid: str | None = None,
         source: list[Dataset] | None = None) -> Dataset:
    """A SEG written by highdicom on the CT: ``segments`` are (label, kind, array on the CT)."""
    descriptions = [_description(n, label, kind) for n, (label, kind, _) in enumerate(segments, start=1)]
    arrays = [a for _, _, a in segments]
    pixels = seg_pixel_array(arrays, seg_type)
    return hd.seg.Segmentation(
        source_images=source or study.ct, pixel_array=pixels, segmentation_type=seg_type,
        segment_descriptions=descriptions, series_instance_uid=series_uid or hd.UID(), series_number=20,
        sop_instance_uid=hd.UID(), instance_number=instance, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="0", omit_empty_frames=omit_empty_frames,
        max_fractional_value=200 if seg_type == "FRACTIONAL" else 255)


class _Run(dict[str, Any]):
    """The job's VOIs by name, with the study, method and dose map to compute the expected means."""

    study: PhantomStudy
    method: str
    dose: np.ndarray

    def expected(self, names: tuple[str, ...]) -> Any:
        """The expected Dmean of the VOI made of compartments ``names``, as ``pytest.approx``."""
        if self.method == "ldm":
            return pytest.approx(_analytic_dmean(self.study, names), rel=1e-6)
        return pytest.approx(float(self.dose[self.study.phantom.mask(*names)].mean(dtype=np.float64)), rel=1e-5)


@pytest.fixture(params=["ldm", "dvk"])
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _run(study: PhantomStudy, segs: list[Dataset], method: str = "ldm") -> _Run:
    pacs = MemoryDicomweb([*study.datasets(include_seg=False), *segs])
    result = run_voxel_dosimetry(pacs, study.study_uid, ACTIVITY_GBQ, method, str(segs[0].SeriesInstanceUID),
                                 store=False)
    run = _Run({v.name: v for v in result.vois})
    run.study, run.method, run.dose = study, method, result.dose_gy
    return run


@pytest.mark.parametrize("omit_empty_frames", [True, False])
def test_a_single_segment_seg_written_by_highdicom_gives_the_analytic_mean_dose(
        study: PhantomStudy, omit_empty_frames: bool, method: str) -> None:
    """highdicom puts SegmentIdentificationSequence in the Shared Functional Groups for one
    segment (PS3.3 C.7.6.16 allows it); such a SEG was refused."""
    seg = _seg(study, [("liver", "liver", _on_ct(study.phantom.mask(*LIVER)))], omit_empty_frames=omit_empty_frames)
    assert "SegmentIdentificationSequence" in seg.SharedFunctionalGroupsSequence[0]
    vois = _run(study, [seg], method)
    assert vois["liver"].voxel_count == int(study.phantom.mask(*LIVER).sum())
    assert vois["liver"].metrics["Dmean"] == vois.expected(LIVER)


@pytest.mark.parametrize("omit_empty_frames", [True, False])
def test_a_several_segment_seg_written_by_highdicom_gives_the_analytic_mean_doses(
        study: PhantomStudy, omit_empty_frames: bool, method: str) -> None:
    phantom = study.phantom
    seg = _seg(study, [("liver", "liver", _on_ct(phantom.mask(*LIVER))),
                       ("tumour 1", "tumour", _on_ct(phantom.mask("tumour 1"))),
                       ("tumour 2", "tumour", _on_ct(phantom.mask("tumour 2")))],
               omit_empty_frames=omit_empty_frames)
    vois = _run(study, [seg], method)
    assert set(vois) == {"liver", "tumour 1", "tumour 2", "normal liver"}
    for name, names in (("liver", LIVER), ("tumour 1", ("tumour 1",)), ("tumour 2", ("tumour 2",)),
                        ("normal liver", ("normal liver",))):
        assert vois[name].metrics["Dmean"] == vois.expected(names), name
    assert vois["tumour 1"].role == "tumour" and vois["liver"].role == "liver"
    # the liver segment holds its tumours; the normal liver (liver minus tumours) is derived beside it
    assert vois["normal liver"].role == "normal-liver" and vois["normal liver"].source == "derived"
    assert vois["normal liver"].voxel_count == int(phantom.mask("normal liver").sum())


def test_a_labelmap_seg_gives_the_analytic_mean_doses(study: PhantomStudy, method: str) -> None:
    phantom = study.phantom
    seg = _seg(study, [("normal liver", "liver", _on_ct(phantom.mask("normal liver"))),
                       ("tumour 1", "tumour", _on_ct(phantom.mask("tumour 1"))),
                       ("tumour 2", "tumour", _on_ct(phantom.mask("tumour 2")))], seg_type="LABELMAP")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    vois = _run(study, [seg], method)
    assert all(v.source == "segmentation" for v in vois.values())  # nothing overlaps: nothing derived
    for name in ("normal liver", "tumour 1", "tumour 2"):
        assert vois[name].voxel_count == int(phantom.mask(name).sum())
        assert vois[name].metrics["Dmean"] == vois.expected((name,)), name


@pytest.mark.parametrize(("rim", "inside"), [(0.3, False), (0.7, True)])
def test_a_fractional_seg_keeps_voxels_at_least_half_inside(study: PhantomStudy, rim: float, inside: bool,
                                                            method: str) -> None:
    """A fractional liver with a one-voxel rim of ``rim``: the rim is in the VOI at ≥ 50 %."""
    from scipy import ndimage

    liver = study.phantom.mask(*LIVER)
    shell = ndimage.binary_dilation(liver) & ~liver
    fraction = liver.astype(np.float32) + rim * shell
    seg = _seg(study, [("liver", "liver", _on_ct(fraction))], seg_type="FRACTIONAL")
    vois = _run(study, [seg], method)
    expected = liver | shell if inside else liver
    assert vois["liver"].voxel_count == int(expected.sum())
    if not inside:
        assert vois["liver"].metrics["Dmean"] == vois.expected(LIVER)


def test_a_seg_series_of_one_instance_per_segment_gives_every_segment(study: PhantomStudy, method: str) -> None:
    phantom = study.phantom
    series = hd.UID()
    segs = [_seg(study, [(name, kind, _on_ct(phantom.mask(*names)))], instance=n, series_uid=series)
            for n, (name, kind, names) in enumerate((("liver", "liver", LIVER), ("tumour 1", "tumour", ("tumour 1",))),
                                                    start=1)]
    vois = _run(study, segs, method)
    assert set(vois) == {"liver", "tumour 1", "normal liver"}
    assert vois["tumour 1"].metrics["Dmean"] == vois.expected(("tumour 1",))


def _thin_slice_ct(study: PhantomStudy, slices: int, step_mm: float) -> list[Dataset]:
    """``slices`` small CT images ``step_mm`` apart, positions rounded to 0.01 mm as scanners
    write them (so the steps alternate between two values)."""
    template = study.ct[0]
    out = []
    for k in range(slices):
        ds = deepcopy(template)
        ds.SOPInstanceUID = hd.UID()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.Rows = ds.Columns = 8
        ds.ImagePositionPatient = ["-10.0", "-10.0", f"{-160.0 + k * step_mm:.2f}"]
        ds.SliceThickness = f"{step_mm:.4f}"
        ds.PixelData = np.full((8, 8), 1024, dtype=np.uint16).tobytes()
        out.append(ds)
    return out


def test_a_seg_on_1_0667_mm_slices_lands_on_its_slices(study: PhantomStudy) -> None:
    """300 slices over 320 mm (1.0667 mm apart, positions rounded by the writer): the frames are
    placed on their own slices, not refused by a hand-made lattice check."""
    ct = _thin_slice_ct(study, 300, 320.0 / 300)
    design = np.zeros((300, 8, 8), dtype=bool)
    design[40:260, 2:6, 1:7] = True
    lesion = np.zeros_like(design)
    lesion[250:290, 3:5, 3:5] = True
    seg = _seg(study, [("liver", "liver", design), ("lesion", "tumour", lesion)], source=ct)
    grid = ct_volume(ct).grid
    vois = {v.name: v for v in seg_vois(seg, grid)}
    np.testing.assert_array_equal(vois["liver"].mask, design)
    np.testing.assert_array_equal(vois["lesion"].mask, lesion)


def test_a_seg_in_another_frame_of_reference_is_refused_by_name(study: PhantomStudy) -> None:
    seg = _seg(study, [("liver", "liver", _on_ct(study.phantom.mask(*LIVER)))])
    grid = ct_volume(study.ct).grid
    assert seg_vois(seg, grid)
    seg.FrameOfReferenceUID = "1.2.3.4.5"
    with pytest.raises(SegmentationError, match=r"Frame of Reference \(0020,0052\)") as err:
        seg_vois(seg, grid)
    assert err.value.status == 422 and err.value.expression == "segmentationSeriesUid"
