"""What the gateway and the dosimetry service must agree on about voxel dosimetry.

The gateway decides from a PACS study whether to start a voxel-dosimetry job, and validates the
``$voxel-dosimetry`` Parameters; the dosimetry worker then reads the same study's DICOM and
decides whether it holds a Y-90 record or a Tc-99m MAA simulation. Both read these rules from
here, so a study the gateway sends is one the worker classifies the same way:

* :data:`NUCLIDES_BY_CODE` — the radionuclides by their DICOM CID 18 code (SNOMED CT, and the
  retired SNOMED-RT codes many NM/PET systems still write), with their half-lives;
* :func:`identify_nuclide` — code first, then RadionuclideHalfLife (0018,1075) within
  :data:`HALF_LIFE_TOLERANCE`, then (only when neither is stated) the free-text names;
* :func:`classify_study` — Y-90 PET, Y-90 bremsstrahlung SPECT, Tc-99m MAA SPECT or none;
* :func:`missing_instances` — whether an emission series still lacks instances its own header
  announces (a study the PACS calls stable may still be arriving when an upload pauses);
* :func:`parse_voxel_parameters` — the ``$voxel-dosimetry`` input Parameters.

Plain data and FHIR errors only: no I/O, no web framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from netliver.fhir.outcome import FhirError
from netliver.fhir.parameters import parameters_of

__all__ = [
    "COMPLETENESS_ATTRIBUTES",
    "F18",
    "GA68",
    "HALF_LIFE_TOLERANCE",
    "MAX_ACTIVITY_GBQ",
    "NUCLIDES_BY_CODE",
    "STUDY_KINDS",
    "TC99M",
    "VOXEL_METHODS",
    "VOXEL_PARAMETERS",
    "Y90",
    "Nuclide",
    "StudyClass",
    "classify_study",
    "identify_nuclide",
    "missing_instances",
    "nuclide_by_half_life",
    "parse_voxel_parameters",
]


@dataclass(frozen=True)
class Nuclide:
    name: str
    half_life_s: float


#: Y-90 64.1 h (evaluated nuclear data; the planning default of the dosimetry service),
#: Tc-99m 6.0067 h, F-18 109.77 min, Ga-68 67.71 min (DDEP recommended data).
Y90 = Nuclide("Y-90", 64.1 * 3600.0)
TC99M = Nuclide("Tc-99m", 6.0067 * 3600.0)
F18 = Nuclide("F-18", 109.77 * 60.0)
GA68 = Nuclide("Ga-68", 67.71 * 60.0)

#: RadionuclideCodeSequence (0054,0300) code values of DICOM CID 18 (PS3.16).
NUCLIDES_BY_CODE: dict[str, Nuclide] = {
    "14691008": Y90,
    "72454006": TC99M,
    "77004003": F18,
    "12585003": GA68,
    # Retired SNOMED-RT codes (coding scheme SRT) for the same CID 18 concepts.
    "C-162A7": Y90,
    "C-163A8": TC99M,
}

#: Relative tolerance within which a RadionuclideHalfLife (0018,1075) names a nuclide.
HALF_LIFE_TOLERANCE = 0.01

_NAME_WORDS: tuple[tuple[Nuclide, tuple[str, ...]], ...] = (
    (Y90, ("yttrium", "y-90", "90y", "y90")),
    (TC99M, ("technetium", "99m")),
)


def nuclide_by_half_life(half_life_s: float) -> Nuclide | None:
    """The nuclide whose half-life is within :data:`HALF_LIFE_TOLERANCE` of ``half_life_s``."""
    for nuclide in dict.fromkeys(NUCLIDES_BY_CODE.values()):
        if abs(half_life_s - nuclide.half_life_s) <= HALF_LIFE_TOLERANCE * nuclide.half_life_s:
            return nuclide
    return None


def _nuclide_by_name(text: str) -> Nuclide | None:
    lowered = text.lower()
    for nuclide, words in _NAME_WORDS:
        if any(word in lowered for word in words):
            return nuclide
    return None


def identify_nuclide(code: str = "", half_life_s: float | None = None, text: str = "") -> Nuclide | None:
    """The nuclide a radiopharmaceutical item names, or None.

    A recognised code decides. Else a stated half-life decides: within the tolerance of a known
    nuclide it names that one, and otherwise none (a measured half-life outranks free text).
    Only when neither is stated are the names (``text``: Radiopharmaceutical, CodeMeaning) read.
    """
    known = NUCLIDES_BY_CODE.get(code)
    if known is not None:
        return known
    if half_life_s is not None and math.isfinite(half_life_s) and half_life_s > 0:
        return nuclide_by_half_life(half_life_s)
    return _nuclide_by_name(text)


# -- study classification ---------------------------------------------------------------------

#: What a PACS study is for dosimetry.
STUDY_KINDS = ("y90-pet", "y90-spect", "maa-spect", "none")


class StudyClass(NamedTuple):
    kind: str  # one of STUDY_KINDS
    activity_gbq: float | None  # administered Y-90 activity stated in the DICOM header
    reason: str


def _float(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _code_of(rp: Mapping[str, Any]) -> str:
    codes = rp.get("RadionuclideCodeSequence")
    if isinstance(codes, list) and codes and isinstance(codes[0], Mapping):
        return str(codes[0].get("CodeValue", ""))
    return ""


def _names_of(rp: Mapping[str, Any]) -> str:
    """The free text of the item: its string attributes and the code's meaning."""
    codes = rp.get("RadionuclideCodeSequence")
    meaning = codes[0].get("CodeMeaning", "") if isinstance(codes, list) and codes and isinstance(
        codes[0], Mapping) else ""
    return " ".join([*(str(v) for v in rp.values() if isinstance(v, str)), str(meaning)])


def series_nuclide(rp: Mapping[str, Any]) -> Nuclide | None:
    """:func:`identify_nuclide` on a RadiopharmaceuticalInformationSequence item given as a
    mapping of attribute keywords (Orthanc's simplified tags, or a pydicom item's values)."""
    return identify_nuclide(_code_of(rp), _float(rp.get("RadionuclideHalfLife")), _names_of(rp))


def classify_study(series: Sequence[Mapping[str, Any]]) -> StudyClass:
    """(kind, administered Y-90 activity in GBq or None, reason) from series summaries.

    Each summary: ``{"modality", "radiopharmaceutical": {attribute keyword: value} | None}``.
    PS3.3 C.8.9.2: PET RadionuclideTotalDose (0018,1074) is in Bq; C.8.4.10: NM in MBq.
    """
    modalities = {s.get("modality") for s in series}
    ct_note = "" if "CT" in modalities else " (no CT series)"
    for s in series:
        modality, rp = s.get("modality"), s.get("radiopharmaceutical") or {}
        if modality not in {"PT", "NM"} or not rp:
            continue
        nuclide = series_nuclide(rp)
        dose = _float(rp.get("RadionuclideTotalDose"))
        activity = None if dose is None else dose / (1e9 if modality == "PT" else 1e3)
        if nuclide is Y90:
            kind = "y90-pet" if modality == "PT" else "y90-spect"
            return StudyClass(kind, activity, f"Y-90 {modality} study{ct_note}")
        text = str(rp.get("Radiopharmaceutical", "")).lower()
        if nuclide is TC99M and modality == "NM" and ("maa" in text or "macroaggregat" in text):
            return StudyClass("maa-spect", None, f"Tc-99m MAA SPECT study{ct_note}")
    return StudyClass("none", None, "not a dosimetry study (no Y-90 PET/SPECT or Tc-99m MAA SPECT series)")


# -- series completeness ------------------------------------------------------------------------

#: The header attributes :func:`missing_instances` reads (keywords, as Orthanc's simplified tags
#: and pydicom name them).
COMPLETENESS_ATTRIBUTES = ("NumberOfSlices", "NumberOfTimeSlices", "NumberOfFrames", "SeriesType")


def _count(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number.is_integer() and number >= 1 else None


def missing_instances(modality: str, instances: int, header: Mapping[str, Any]) -> str | None:
    """Why an emission series of ``instances`` instances is not complete yet, or None.

    A PET series stored one slice per instance (PET Image Storage; PS3.3 C.8.9.1 PET Series
    module) announces its size: NumberOfSlices (0054,0081) slices per volume, times
    NumberOfTimeSlices (0054,0101) volumes for a DYNAMIC series. Fewer instances than that is a
    series still arriving (or one the PACS lost part of): its dose would be computed over part of
    the body with the whole administered activity. ``header`` is the first instance's attributes
    by keyword (:data:`COMPLETENESS_ATTRIBUTES`). NM reconstructions are one multi-frame
    instance, complete in themselves; a multi-frame (enhanced) PET likewise; nothing is said
    when the header states no size.
    """
    if modality != "PT" or (_count(header.get("NumberOfFrames")) or 1) > 1:
        return None
    slices = _count(header.get("NumberOfSlices"))
    if slices is None:
        return None
    series_type = header.get("SeriesType") or ""
    # Orthanc's simplified tags join values with a backslash; pydicom gives a sequence
    first = (str(series_type).split("\\")[0] if isinstance(series_type, str)
             else str(next(iter(series_type), "")))
    volumes = (_count(header.get("NumberOfTimeSlices")) or 1) if str(first).upper() == "DYNAMIC" else 1
    expected = slices * volumes
    if instances >= expected:
        return None
    per_volume = f" × {volumes} time slices" if volumes > 1 else ""
    return (f"the PT series holds {instances} of the {expected} instances its header announces "
            f"(NumberOfSlices (0054,0081) = {slices}{per_volume})")


# -- $voxel-dosimetry parameters ----------------------------------------------------------------

#: name: (FHIR value[x] type, required) of the ``$voxel-dosimetry`` input parameters.
VOXEL_PARAMETERS: dict[str, tuple[str, bool]] = {
    "studyInstanceUid": ("String", True),
    "administeredActivityGBq": ("Decimal", True),
    "method": ("Code", False),
    "segmentationSeriesUid": ("String", False),
    # the DICOM Spatial Registration (REG) of a CT in another Frame of Reference; default: the study's
    "registrationSeriesUid": ("String", False),
    "patient": ("Reference", False),
}
#: ``method``: local deposition (ldm) or dose-voxel-kernel convolution (dvk).
VOXEL_METHODS = ("ldm", "dvk")
#: Above this an administered Y-90 SIRT activity is implausible, GBq.
MAX_ACTIVITY_GBQ = 50


def _voxel_value(name: str, vtype: str, value: Any, where: str) -> Any:
    """One parameter's value, checked; 422 naming ``where`` (the value[x] element)."""
    if vtype == "Decimal":
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise FhirError(422, "value", f"{name} is not a number", where) from None
        if not number.is_finite() or number <= 0:
            raise FhirError(422, "value", f"{name} must be a positive activity in GBq, got {value}", where)
        if number > MAX_ACTIVITY_GBQ:
            raise FhirError(422, "value", f"{name} = {value} GBq is implausible for Y-90 SIRT "
                            f"(> {MAX_ACTIVITY_GBQ} GBq)", where)
        return float(number)
    if vtype == "Reference":
        ref = value.get("reference") if isinstance(value, dict) else None
        if not isinstance(ref, str) or not ref.startswith("Patient/"):
            raise FhirError(422, "value", "patient must reference a Patient", where)
        return ref
    if not isinstance(value, str) or not value.strip():
        raise FhirError(422, "value", f"{name} must be a non-empty string", where)
    return value.strip()


def parse_voxel_parameters(body: Any) -> dict[str, Any]:
    """Validate the ``$voxel-dosimetry`` Parameters; 422 naming the offending parameter."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(422 if isinstance(body, dict) and body.get("resourceType") else 400,
                        "invalid", "expected a Parameters resource", "resourceType")
    out: dict[str, Any] = {}
    for i, param in enumerate(parameters_of(body)):
        name = param.get("name")
        where = f"Parameters.parameter[{i}]"
        if name not in VOXEL_PARAMETERS:
            raise FhirError(422, "not-supported", f"unknown parameter {name!r}", f"{where}.name")
        if name in out:
            raise FhirError(422, "invalid", f"parameter {name} given twice", f"{where}.name")
        vtype, _ = VOXEL_PARAMETERS[name]
        key = f"value{vtype}"
        if key not in param:
            raise FhirError(422, "invalid", f"{name} needs {key}", f"{where}.{key}")
        out[name] = _voxel_value(name, vtype, param[key], f"{where}.{key}")
    for name, (_, required) in VOXEL_PARAMETERS.items():
        if required and name not in out:
            raise FhirError(422, "required", f"missing required parameter {name}",
                            f"Parameters.parameter.where(name='{name}')")
    out.setdefault("method", "ldm")
    if out["method"] not in VOXEL_METHODS:
        raise FhirError(422, "value", f"method must be ldm or dvk, not {out['method']!r}",
                        "Parameters.parameter.where(name='method')")
    for uid_name in ("studyInstanceUid", "segmentationSeriesUid", "registrationSeriesUid"):
        uid = out.get(uid_name)
        if uid is not None and (len(uid) > 64 or not all(ch.isdigit() or ch == "." for ch in uid)):
            raise FhirError(422, "value", f"{uid_name} is not a DICOM UID",
                            f"Parameters.parameter.where(name='{uid_name}')")
    return out
