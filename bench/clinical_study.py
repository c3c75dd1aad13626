"""A clinical-size synthetic SPECT/CT study for the job benchmark (``bench_clinical``).

- NM: Y-90 bremsstrahlung SPECT, one multi-frame RECON TOMO instance, 128 × 128 × 128 voxels of
  4.0 mm (512 mm field of view), the usual reconstruction matrix of a SPECT/CT.
- CT: 512 × 512 pixels of 0.9766 mm (500 mm field of view), 256 slices of 2.0 mm (512 mm),
  12-bit stored values: 128 MiB of raw pixels. Its voxels do not divide the emission voxels
  evenly (4.0 / 0.9766 = 4.096), as on a real scanner.
- SEG: a binary DICOM SEG on the CT with the liver, two tumours and the lungs.

The anatomy is defined in millimetres (cylinder body, ellipsoid liver, spherical tumours, two
ellipsoid lungs) and evaluated on each grid, so both series describe the same patient.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from pydicom.dataset import Dataset

from services.dosimetry.imaging import phantom_design
from services.dosimetry.imaging import phantoms as ph

EMISSION_N = 128
EMISSION_MM = 4.0
CT_COLUMNS = 512
CT_PIXEL_MM = 0.9766
CT_SLICES = 256
CT_SLICE_MM = 2.0
CENTRE_Z_MM = -120.0  # the phantom module puts the emission centre at (0, 0, -120) mm

Shape = Callable[[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]


def _ellipsoid(centre: tuple[float, float, float], semi: tuple[float, float, float]) -> Shape:
    def inside(g: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        z, y, x = g
        return np.asarray(((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2
                          + ((z - centre[2]) / semi[2]) ** 2 <= 1.0)
    return inside


def _body(g: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    _z, y, x = g
    return np.asarray((x / 165.0) ** 2 + (y / 120.0) ** 2 <= 1.0)


def _lungs(g: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    zc = CENTRE_Z_MM
    return np.asarray(_ellipsoid((-75.0, 0.0, zc + 120.0), (60.0, 75.0, 90.0))(g)
                      | _ellipsoid((75.0, 0.0, zc + 120.0), (60.0, 75.0, 90.0))(g))


COMPARTMENTS = [ph.Compartment("air", 0, -1000.0), ph.Compartment("body", 0, 40.0),
                ph.Compartment("lungs", 6, -780.0), ph.Compartment("normal liver", 100, 60.0),
                ph.Compartment("tumour 1", 400, 60.0), ph.Compartment("tumour 2", 400, 60.0)]
SHAPES: list[Shape] = [
    _body, _lungs,
    _ellipsoid((-45.0, 10.0, CENTRE_Z_MM), (95.0, 80.0, 75.0)),
    _ellipsoid((-70.0, 20.0, CENTRE_Z_MM + 10.0), (25.0, 25.0, 25.0)),
    _ellipsoid((-10.0, -20.0, CENTRE_Z_MM - 15.0), (15.0, 15.0, 15.0)),
]
SEGMENTS = [("liver", "organ", "liver", ("normal liver", "tumour 1", "tumour 2")),
            ("tumour 1", "abnormal", "tumour", ("tumour 1",)),
            ("tumour 2", "abnormal", "tumour", ("tumour 2",)),
            ("lungs", "organ", "lung", ("lungs",))]


def _labels(g: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    labels = np.zeros(np.broadcast_shapes(*(a.shape for a in g)), dtype=np.uint8)
    for i, shape in enumerate(SHAPES, start=1):
        labels[shape(g)] = i
    return labels


@dataclass(frozen=True)
class ClinicalStudy:
    study_uid: str
    nm: Dataset
    ct: list[Dataset]
    seg: Dataset

    @property
    def ct_raw_bytes(self) -> int:
        return CT_SLICES * CT_COLUMNS * CT_COLUMNS * 2

    def datasets(self) -> list[Dataset]:
        return [self.nm, *self.ct, self.seg]


def _ct_axes() -> tuple[np.ndarray, np.ndarray]:
    xy = (np.arange(CT_COLUMNS) - (CT_COLUMNS - 1) / 2.0) * CT_PIXEL_MM
    z = CENTRE_Z_MM + (np.arange(CT_SLICES) - (CT_SLICES - 1) / 2.0) * CT_SLICE_MM
    return xy, z


def _ct_slice(study: dict[str, object], key: tuple[object, ...], k: int, labels: np.ndarray,
              rng: np.random.Generator) -> Dataset:
    hu = np.array([c.hu for c in COMPARTMENTS])[labels].astype(np.float32)
    hu += np.where(labels > 0, rng.normal(0.0, 10.0, hu.shape).astype(np.float32), np.float32(0))
    stored = np.clip(np.round(hu + 1024.0), 0, 4095).astype(np.uint16)
    xy, z = _ct_axes()
    ds = Dataset()
    when = ph.ADMINISTRATION + timedelta(hours=2) - timedelta(minutes=5)
    ph._common(ds, study, "CT", ph._uid("ct-series", *key), 2, "CT (clinical-size phantom)",
               ph.CT_IMAGE_STORAGE, ph._uid("ct-instance", k, *key), when)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = k + 1
    ph._image_pixel(ds, CT_COLUMNS, CT_COLUMNS)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelSpacing = [f"{CT_PIXEL_MM:g}", f"{CT_PIXEL_MM:g}"]
    ds.SliceThickness = f"{CT_SLICE_MM:g}"
    ds.ImagePositionPatient = [f"{xy[0]:.4f}", f"{xy[0]:.4f}", f"{z[k]:.4f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "-1024", "HU"
    ds.PixelData = stored.tobytes()
    return ds


def build_clinical_study(seed: int = 17) -> ClinicalStudy:
    """The NM, CT and SEG datasets (CT and SEG built slice by slice; ~1 min on one core)."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    phantom = phantom_design._phantom("clinical-size", EMISSION_N, EMISSION_MM, COMPARTMENTS, SHAPES, SEGMENTS,
                          "Y-90", "Y-90 microspheres")
    key = ("clinical-size", EMISSION_N, EMISSION_MM, CT_SLICES, seed)
    acquisition = ph.ADMINISTRATION + timedelta(hours=2)
    study = {"study_uid": ph._uid("study", *key), "for_uid": ph._uid("frame-of-reference", *key),
             "patient_id": f"PHANTOM-clinical-{seed}", "patient_name": "Phantom^ClinicalSize",
             "study_time": acquisition, "accession": f"ACC{seed:04d}CLIN",
             "description": "Y-90 bremsstrahlung SPECT/CT"}
    nm = ph._nm_dataset(phantom, study, key, phantom.counts(), ph.ADMINISTRATION, acquisition,
                        2.0e9)
    xy, z = _ct_axes()
    rng = np.random.default_rng(seed)
    masks = np.zeros((CT_SLICES, CT_COLUMNS, CT_COLUMNS, len(SEGMENTS)), dtype=np.uint8)
    index = {c.name: i for i, c in enumerate(COMPARTMENTS)}
    ct = []
    for k in range(CT_SLICES):
        g = np.meshgrid(np.array([z[k]]), xy, xy, indexing="ij")
        labels = _labels((g[0], g[1], g[2]))[0]
        ct.append(_ct_slice(study, key, k, labels, rng))
        for s, (_label, _cat, _typ, names) in enumerate(SEGMENTS):
            masks[k, :, :, s] = np.isin(labels, [index[n] for n in names])
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i, segment_label=label,
        segmented_property_category=Code(ph._CATEGORY[cat][0], "SCT", ph._CATEGORY[cat][1]),
        segmented_property_type=Code(ph._TYPE[typ][0], "SCT", ph._TYPE[typ][1]),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i, (label, cat, typ, _names) in enumerate(SEGMENTS, start=1)]
    seg = hd.seg.Segmentation(
        source_images=ct, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=ph._uid("seg-series", *key),
        series_number=10, sop_instance_uid=ph._uid("seg-instance", *key), instance_number=1,
        manufacturer="netliver synthetic phantom", manufacturer_model_name="phantom",
        software_versions="1", device_serial_number="0", series_description="VOIs (phantom design)")
    return ClinicalStudy(str(study["study_uid"]), nm, ct, seg)


def upload(orthanc_url: str, study: ClinicalStudy) -> None:
    """POST every instance to Orthanc, four at a time."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda ds: ph.upload_datasets(orthanc_url, [ds], timeout_s=120.0), study.datasets()))
