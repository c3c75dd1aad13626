"""Enhanced multi-frame CT and PET instances (PS3.3 A.38 Enhanced CT, A.56 Enhanced PET, and
their Legacy Converted forms A.70/A.72) as one volume, read with highdicom.

All slices are frames of one instance; geometry and rescaling are in the Shared or Per-frame
Functional Groups (Plane Position / Orientation, Pixel Measures, Pixel Value Transformation,
Real World Value Mapping; C.7.6.16). highdicom's ``Image.get_volume`` sorts the frames in
space, checks that they form one regularly spaced volume and applies the rescale of each
frame (or the real-world value map when there is one).

The rest of the pipeline reads header attributes (PET Units, DecayCorrection, the
radiopharmaceutical, times) from :func:`enhanced_header`: the top-level attributes, completed
with the converted attributes a Legacy Converted instance keeps in its Unassigned Shared
Converted Attributes Sequence (0020,9170), and for a native Enhanced PET the equivalents of
its own attributes: Units BQML when the real-world value map's unit is UCUM ``Bq/ml``, and
DecayCorrection START at DecayCorrectionDateTime (0018,9701) when DecayCorrected (0018,9758)
is YES, NONE when it is NO (each frame is then corrected from its own time, :mod:`.enhanced_decay`).
"""

from __future__ import annotations

from copy import deepcopy

import numpy as np
from pydicom.dataset import Dataset

from services.dosimetry.imaging.errors import GeometryError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.pixels import check_declared_size, no_decoder_error

__all__ = ["ENHANCED_IMAGE_STORAGE", "enhanced_header", "enhanced_volume", "is_enhanced"]

#: Enhanced CT, Legacy Converted Enhanced CT, Enhanced PET, Legacy Converted Enhanced PET.
ENHANCED_IMAGE_STORAGE = frozenset({
    "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2",
    "1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.128.1",
})
_READ_ERRORS = (ValueError, RuntimeError, AttributeError, KeyError, TypeError, IndexError)


def is_enhanced(ds: Dataset) -> bool:
    """An enhanced multi-frame image whose frames are placed by functional groups."""
    return str(ds.get("SOPClassUID", "")) in ENHANCED_IMAGE_STORAGE or (
        "PerFrameFunctionalGroupsSequence" in ds and str(ds.get("Modality", "")) in {"CT", "PT"})


def _first(seq_holder: Dataset, keyword: str) -> Dataset | None:
    seq = seq_holder.get(keyword)
    return seq[0] if seq else None


def enhanced_header(ds: Dataset) -> Dataset:
    """The instance's header attributes as a classic single-frame instance would carry them."""
    header = Dataset()
    for element in ds:
        if element.keyword not in {"PixelData", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"}:
            header.add(deepcopy(element))
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    shared = _first(ds, "SharedFunctionalGroupsSequence") or Dataset()
    converted = _first(shared, "UnassignedSharedConvertedAttributesSequence")
    for element in converted or []:
        if element.keyword not in header:
            header.add(deepcopy(element))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    first_frame = _first(per_frame[0], "UnassignedPerFrameConvertedAttributesSequence") if per_frame else None
    for element in first_frame or []:
        if element.keyword not in header:
            header.add(deepcopy(element))
    mapping = _first(shared, "RealWorldValueMappingSequence") or (
        _first(per_frame[0], "RealWorldValueMappingSequence") if per_frame else None)
    units = _first(mapping, "MeasurementUnitsCodeSequence") if mapping is not None else None
    if "Units" not in header and units is not None and str(units.get("CodeValue", "")).lower() == "bq/ml":
        header.Units = "BQML"
    if "DecayCorrection" not in header and str(ds.get("DecayCorrected", "")).upper() == "YES" and \
            ds.get("DecayCorrectionDateTime"):
        header.DecayCorrection = "START"
    elif "DecayCorrection" not in header and str(ds.get("DecayCorrected", "")).upper() == "NO":
        header.DecayCorrection = "NONE"  # each frame at its own time: :mod:`.enhanced_decay`
    return header


def enhanced_volume(ds: Dataset, what: str) -> tuple[np.ndarray, Grid]:
    """Rescaled values (float64, slices × rows × columns) and their grid."""
    import highdicom as hd

    check_declared_size(ds, what)
    try:
        volume = hd.Image.from_dataset(ds, copy=True).get_volume(dtype=np.float64)
    except NotImplementedError as exc:
        raise no_decoder_error(ds, what, exc) from exc
    except _READ_ERRORS as exc:
        raise GeometryError(f"{what}: its frames do not form one regularly spaced volume (Plane Position / "
                            f"Orientation and Pixel Measures functional groups): {exc}",
                            "PerFrameFunctionalGroupsSequence") from exc
    values = np.asarray(volume.array, dtype=np.float64)
    if values.ndim == 4:
        values = values[..., 0]
    shape = (int(values.shape[0]), int(values.shape[1]), int(values.shape[2]))
    return values, Grid(shape, np.asarray(volume.affine, dtype=np.float64), str(ds.get("FrameOfReferenceUID", "")))
