"""Voxel dosimetry of one PACS study, stage by stage: fetch, decode, resample, dose, dvh, store.

1. **fetch** — QIDO/WADO the activity series (PT, else NM), its CT, and the SEG/RTSTRUCT when
   ``segmentation_series_uid`` is given (:mod:`.dicomweb`). The activity volume (small) is
   decoded first, in patient coordinates and decay corrected to the administration
   (:mod:`.volume`), and placed in the CT's Frame of Reference once the CT's first instance is
   in (through the study's rigid Spatial Registration when the frames differ,
   :mod:`.registration`). The CT is read as it arrives: each instance's stored values become
   mass density, reduced onto the emission grid's rows and columns, and the instance is let go
   (:mod:`.ct_density`; no CT-sized array is made), while a thread fetches the SEG and reads it
   into VOIs on that grid (an RTSTRUCT waits for the CT's grid, on which it is drawn).
2. **decode** — the activity series' completeness and the CT/activity match checked
   (:mod:`.resample`).
3. **resample** — the CT's mass density on the activity grid (the box average of the
   HU-density table, finished along the normal once the CT is in); VOIs from the SEG/RTSTRUCT, or
   the automatic liver VOI (:mod:`.voi`).
4. **dose** — the engine (:mod:`services.dosimetry.domain.voxel`): ``ldm`` local deposition or
   ``dvk`` Y-90 soft-tissue kernel convolution, with the CT density map and patient-relative
   calibration over the whole field of view (the administered activity is distributed by the
   counts of every voxel). For a Tc-99m MAA SPECT the activity is the planned Y-90 activity
   (a simulation; the Tc-99m half-life only times the activity map). The ``dvk`` convolution
   needs the counts, not the CT: it runs while the CT streams (fetch), and this stage divides it
   by the density; an MAA simulation with a segmentation, whose counts are first normalised over
   its liver and lungs, convolves here.
5. **dvh** — per VOI: Dmean, D50, D70, D90, V100, V120 (:mod:`services.dosimetry.domain.dvh`),
   volume, mass, share of the counts; the lung shunt fraction when lung and liver VOIs exist;
   for tumour and liver VOIs the voxel BED map's mean, BED70 and the mean EQD2
   (:mod:`services.dosimetry.domain.radiobiology`, tissue parameters by the VOI's role).
6. **store** — the dose map as RT Dose in the same study (STOW-RS, :mod:`.rtdose`); with
   ``store_bed_map`` the voxel BED map as a second RT Dose, DoseType EFFECTIVE (:func:`bed_map`).
   The dvh stage's metrics (no side effect) are computed beside the store's opening (its
   cancellation check) and the RT Dose's encoding; the RT Dose is sent once they are in, so a
   job whose metrics fail stores nothing (the dvh stage's timing is then its opening alone, the
   store's includes the wait for the metrics).

``progress(stage, fraction)`` is called as each stage starts; ``cancelled()`` is asked before
each stage, so a cancelled job stops with :class:`JobCancelledError` and never stores anything
(the store is the last stage, and it is not started once cancelled).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from netliver.dosimetry_contract import COMPLETENESS_ATTRIBUTES, missing_instances
from services.dosimetry.domain.constants import DEFAULT_DOSE_CONSTANT
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.radiobiology import (
    TissueTable,
    tissue_for_role,
)
from services.dosimetry.imaging.ct_density import ct_density_on_grid, outside_ct
from services.dosimetry.imaging.dicomweb import fetch_segmentations, fetch_study
from services.dosimetry.imaging.errors import ImagingError, JobCancelledError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.registration import emission_grid_in_ct_frame, segmentation_frame
from services.dosimetry.imaging.resample import check_ct_matches
from services.dosimetry.imaging.rtdose import (
    STORE_RETRY_DELAYS_S,
    build_rtdose,
    store_rtdose_retrying,
)
from services.dosimetry.imaging.voi import (
    Voi,
    automatic_liver_voi,
    is_seg,
    normal_liver_voi,
    union,
    vois_from_dataset,
)
from services.dosimetry.imaging.voi_doses import VoiDose, voi_doses
from services.dosimetry.imaging.volume import activity_volume

__all__ = ["BED_MAP_COMMENT", "METHODS", "RTDOSE_NOT_STORED", "STAGES", "VoiDose", "VoxelDosimetryResult", "bed_map", "non_negative_counts", "run_voxel_dosimetry"]

#: Stages in order, with the fraction of the job done when each starts (for progress reports).
STAGES: tuple[tuple[str, float], ...] = (
    ("fetch", 0.0), ("decode", 0.25), ("resample", 0.4), ("dose", 0.55), ("dvh", 0.8), ("store", 0.9),
)
METHODS = ("ldm", "dvk")


@dataclass
class VoxelDosimetryResult:
    """What :func:`run_voxel_dosimetry` computed (``dose_gy`` on ``grid``)."""

    study_uid: str
    method: str
    administered_activity_gbq: float
    dose_constant_gy_kg_per_gbq: float
    modality: str
    nuclide: str
    simulation: bool
    voxel_size_mm: tuple[float, float, float]
    reference_time: datetime | None
    vois: list[VoiDose]
    dose_gy: np.ndarray
    grid: Grid
    rtdose_sop_instance_uid: str | None
    rtdose_series_uid: str | None
    lung_shunt_fraction: float | None
    automatic_voi: bool
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    #: The BED map's RT Dose (DoseType EFFECTIVE) in the PACS, when asked for and stored.
    bed_map_sop_instance_uid: str | None = None
    bed_map_series_uid: str | None = None


def non_negative_counts(values: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The activity map as float32 with negative voxels set to 0, and a warning when there were any.

    Filtered back-projection can leave negative voxels; activity cannot be negative, and keeping
    them would lower every VOI's mean dose without saying so. float32 (7 significant digits, far
    finer than any count statistics) puts the dose engine's FFTs in single precision: half the
    time and memory, and the kernel spectra the worker prepares at start are single precision.
    """
    counts = values.astype(np.float32)
    negative = counts < 0
    if not negative.any():
        return counts, None
    share = float(-counts[negative].sum(dtype=np.float64) / max(float(np.abs(counts).sum(dtype=np.float64)), 1e-30))
    counts[negative] = 0.0
    return counts, (f"{int(negative.sum())} voxels with negative values ({100 * share:.2f} % of the absolute "
                    "counts) were set to 0 before the dose calculation")


def _validate(administered_activity_gbq: float, method: str) -> None:
    if not (isinstance(administered_activity_gbq, (int, float)) and math.isfinite(administered_activity_gbq)
            and administered_activity_gbq > 0):
        raise ImagingError(f"administeredActivityGBq must be a positive number, got {administered_activity_gbq!r}",
                           "administeredActivityGBq")
    if method not in METHODS:
        raise ImagingError(f"method must be one of {', '.join(METHODS)}, got {method!r}", "method")


def _kernel_energy(counts: np.ndarray, voxel_size_mm: tuple[float, float, float], activity_gbq: float) -> np.ndarray:
    """The ``dvk`` convolution, which does not depend on the CT (the energy per volume,
    :func:`services.dosimetry.domain.voxel.kernel_energy_density`): run while the CT streams."""
    from services.dosimetry.domain import voxel
    from services.dosimetry.kernel_tables import load_kernel

    kernel = load_kernel(voxel_size_mm, tissue="soft")
    return np.asarray(voxel.kernel_energy_density(counts, voxel_size_mm, activity_gbq, kernel))


def _engine_dose(method: str, counts: np.ndarray, voxel_size_mm: tuple[float, float, float],
                 activity_gbq: float, density: np.ndarray, dose_constant: float,
                 energy: Future[np.ndarray] | None = None) -> np.ndarray:
    """The dose map; for ``dvk``, from ``energy`` (:func:`_kernel_energy` of the same counts,
    started while the CT streamed) when given: its errors are raised here, as the engine's."""
    from services.dosimetry.domain import voxel

    try:
        if method == "ldm":
            return np.asarray(voxel.ldm_dose_gy(counts, voxel_size_mm, activity_gbq, density_g_per_ml=density,
                                                dose_constant_gy_kg_per_gbq=dose_constant))
        if energy is not None:
            return np.asarray(voxel.dose_from_energy_density(energy.result(), density))
        from services.dosimetry.kernel_tables import load_kernel

        kernel = load_kernel(voxel_size_mm, tissue="soft")
        return np.asarray(voxel.kernel_dose_gy(counts, voxel_size_mm, activity_gbq, kernel,
                                               density_g_per_ml=density))
    except DosimetryInputError as exc:
        raise ImagingError(f"the dose engine refused the input: {exc.message}", exc.field) from exc
    except ValueError as exc:  # e.g. no kernel for this voxel size
        raise ImagingError(f"the dose engine refused the input: {exc}", "method") from exc


def run_voxel_dosimetry(client: Any, study_uid: str, administered_activity_gbq: float, method: str,
                        segmentation_series_uid: str | None = None,
                        progress: Callable[[str, float], None] | None = None,
                        cancelled: Callable[[], bool] | None = None, *,
                        dose_constant_gy_kg_per_gbq: float = DEFAULT_DOSE_CONSTANT.value_gy_kg_per_gbq,
                        store: bool = True, tissues: TissueTable | None = None,
                        store_retry_delays_s: tuple[float, ...] = STORE_RETRY_DELAYS_S,
                        registration_series_uid: str | None = None,
                        store_bed_map: bool = False,
                        on_segments: Callable[[list[Voi]], None] | None = None) -> VoxelDosimetryResult:
    """Run the six stages on ``study_uid`` of the PACS behind ``client`` (a DICOMweb client).

    A CT in another Frame of Reference than the emission image is used through the rigid Spatial
    Registration of the study (or of ``registration_series_uid``), see :mod:`.registration`.

    Raises :class:`~services.dosimetry.imaging.errors.ImagingError` subclasses (422/503, with a
    message naming the input or DICOM attribute) and :class:`JobCancelledError`.
    ``store_bed_map`` also stores the voxel BED map (tumour and liver VOIs) as a second RT Dose.
    ``on_segments`` hears a SEG's VOIs as soon as they are read, from the thread that reads them
    while the CT still arrives (e.g. to look up the lesions' BodyStructures meanwhile); it must
    return at once.

    Longer than most functions on purpose: the six stages read in order, each opened by its
    progress report (which is also the cancellation check), with the warnings they add.
    """
    _validate(administered_activity_gbq, method)
    timings: dict[str, float] = {}
    state: dict[str, float] = {}

    def begin(stage: str) -> None:
        now = time.perf_counter()
        if "stage_start" in state:
            timings[_current[0]] = now - state["stage_start"]
        if cancelled is not None and cancelled():
            raise JobCancelledError(stage)
        fraction = dict(STAGES)[stage]
        if progress is not None:
            progress(stage, fraction)
        _current[0] = stage
        state["stage_start"] = time.perf_counter()

    _current = [""]

    begin("fetch")
    images = fetch_study(client, study_uid)
    with contextlib.closing(images):  # the CT's stream, should the job fail before reading all of it
        # The emission volume (small) is decoded first and the CT's first instance read: the grid
        # the SEG is placed on is then known, and the SEG is fetched and read beside the CT's stream.
        activity = activity_volume(images.activity)
        ct_stream = iter(images.ct)
        first_ct = next(ct_stream, None)
        ct_frame = str(first_ct.get("FrameOfReferenceUID", "") or "") if first_ct is not None else ""
        # the emission grid in the CT's Frame of Reference (itself on a hybrid scanner): CT, SEG and RT Dose use it
        grid, registered = emission_grid_in_ct_frame(client, study_uid, activity.grid, ct_frame,
                                                     registration_series_uid)
        nuclide = activity.radiopharmaceutical.nuclide if activity.radiopharmaceutical else "unknown"
        simulation = nuclide == "Tc-99m"
        counts, clipped = non_negative_counts(activity.values)
        with ThreadPoolExecutor(2) as reader:
            # every instance of the series (a SEG may be split into one instance per segment),
            # fetched and read while the CT is stacked slice by slice as its instances arrive
            seg_read = reader.submit(_read_segmentations, client, study_uid, segmentation_series_uid,
                                     images.series, grid, activity.grid, on_segments) \
                if segmentation_series_uid else None
            # the kernel convolution needs the counts, not the CT (whose density divides it at the
            # dose stage): computed meanwhile, unless an MAA simulation's counts wait for its VOIs
            energy = reader.submit(_kernel_energy, counts, grid.spacing_mm, float(administered_activity_gbq)) \
                if method == "dvk" and not (simulation and segmentation_series_uid) and counts.any() else None
            # the CT's density on the emission grid, each instance reduced as it arrives (no CT-sized array)
            ct = ct_density_on_grid(itertools.chain([first_ct], ct_stream) if first_ct is not None else [], grid,
                                    images.ct_instances)
            seg_read_vois, seg_datasets = seg_read.result() if seg_read is not None else ([], [])
    warnings = list(images.warnings)

    begin("decode")
    # after the geometry checks, which name a gap inside the series more precisely
    _check_complete(images.activity)
    warnings.extend(activity.warnings)
    ct_header = ct.header  # names the study for the RT Dose
    warnings.extend(registered)
    check_ct_matches(ct.grid, grid)
    if not activity.grid.frame_of_reference_uid or not ct.grid.frame_of_reference_uid:
        warnings.append("FrameOfReferenceUID (0020,0052) missing on the "
                        f"{'activity series' if not activity.grid.frame_of_reference_uid else 'CT'}: the CT is "
                        "assumed registered to the emission image by the scanner coordinates alone")

    begin("resample")
    density = ct.density
    outside = outside_ct(ct.grid, grid)
    # the counts' share there: of the non-negative counts already made (no clipped copy of the
    # activity map, nor of the voxels outside)
    share = float(np.sum(counts, where=outside, dtype=np.float64) / max(float(counts.sum(dtype=np.float64)), 1e-30))
    if share >= 0.001:  # empty corners beyond a narrower CT field of view are usual and harmless
        warnings.append(f"the CT does not cover {int(np.count_nonzero(outside))} voxels of the emission volume "
                        f"({100 * share:.1f} % of the counts): soft-tissue density 1.04 g/mL assumed there")
    vois: list[Voi]
    segmented = bool(seg_read_vois or seg_datasets)
    if segmented:
        # an RTSTRUCT's contours are drawn on the CT's slices: placed now that the CT's grid is known
        vois = seg_read_vois + [v for seg_ds in seg_datasets
                                for v in vois_from_dataset(seg_ds, *_segmentation_grids(seg_ds, ct.grid, grid,
                                                                                        activity.grid))]
        normal_liver = normal_liver_voi(vois)
        if normal_liver is not None:
            vois.append(normal_liver)
    else:
        vois = [automatic_liver_voi(activity.values, density)]
        warnings.append("no segmentation given: automatic liver VOI (activity ≥ 10 % of the body's 99.9th "
                        "percentile, largest connected component, lungs excluded) — the perfused liver as the "
                        "activity shows it, not an anatomical contour")
    del ct, seg_datasets  # the largest arrays of the job: not needed past this stage

    begin("dose")
    if simulation:
        warnings.append("Tc-99m MAA SPECT: predicted Y-90 dose for the planned activity (simulation)")
    elif nuclide != "Y-90":
        warnings.append(f"radionuclide {nuclide}: the dose is computed for Y-90 microspheres distributed like "
                        "this image")
    spacing = grid.spacing_mm
    if clipped:
        warnings.append(clipped)
    if simulation and segmented:
        counts = _normalise_over_liver_and_lungs(counts, vois, warnings)
    if not float(counts.sum()) > 0:
        raise ImagingError("the activity series holds no counts (all voxels 0)", "studyInstanceUid")
    dose = _engine_dose(method, counts, spacing, float(administered_activity_gbq), density,
                        dose_constant_gy_kg_per_gbq, energy)

    begin("dvh")
    with ThreadPoolExecutor(1) as beside:
        # the metrics (no side effect) are computed beside the store's go-ahead from the gateway and
        # the RT Dose's encoding; the RT Dose is sent once they are in, so a job whose metrics fail
        # stores nothing
        measured = beside.submit(voi_doses, dose, vois, counts, density, grid.voxel_volume_ml, tissues)
        rtdose_uid: str | None = None
        rtdose_series: str | None = None
        bed_uids: tuple[str | None, str | None] = (None, None)
        begin("store")
        if store:
            key = "|".join([study_uid, method, f"{administered_activity_gbq:.6g}", segmentation_series_uid or "auto",
                            f"{dose_constant_gy_kg_per_gbq:g}"])
            ds = build_rtdose(dose, grid, study=ct_header,
                              frame_of_reference_uid=str(ct_header.get("FrameOfReferenceUID", "")),
                              delivered=not simulation,
                              series_description=f"Y-90 dose {method.upper()}{' (MAA simulation)' if simulation else ''}",
                              deterministic_key=key, referenced_series_uid=activity.series_uid,
                              source_images=images.activity)
            measured.result()  # raises what the metrics raised, before anything is written
            # The dose results stand on their own: a PACS that will not take the RT Dose (after
            # retries) costs the copy in the study, not the computation.
            not_stored = store_rtdose_retrying(client, ds, store_retry_delays_s)
            if not_stored is None:
                rtdose_uid, rtdose_series = str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)
            else:
                warnings.append(f"{RTDOSE_NOT_STORED}: {not_stored}. The dose results are kept; run the job "
                                "again to store the RT Dose once the PACS answers")
            bed = bed_map(dose, vois, tissues or TissueTable()) if store_bed_map and not_stored is None else None
            if bed is not None:
                bed_ds = _bed_map_dataset(bed, grid, ds, key, study=ct_header,
                                          frame_of_reference_uid=str(ds.FrameOfReferenceUID),
                                          delivered=not simulation,
                                          series_description=f"Y-90 BED map{' (MAA simulation)' if simulation else ''}",
                                          referenced_series_uid=activity.series_uid, source_images=images.activity)
                bed_not_stored = store_rtdose_retrying(client, bed_ds, store_retry_delays_s)
                if bed_not_stored is None:
                    bed_uids = (str(bed_ds.SOPInstanceUID), str(bed_ds.SeriesInstanceUID))
                else:
                    warnings.append(f"the BED map was not stored in the PACS: {bed_not_stored}")
        results, lsf = measured.result()
    timings["store"] = time.perf_counter() - state["stage_start"]
    if progress is not None:
        progress("done", 1.0)
    return VoxelDosimetryResult(
        study_uid, method, float(administered_activity_gbq), dose_constant_gy_kg_per_gbq, activity.modality,
        nuclide, simulation, spacing, activity.reference_time, results, dose, grid, rtdose_uid, rtdose_series,
        lsf, any(v.source == "automatic" for v in vois), warnings, timings, *bed_uids)


def _read_segmentations(client: Any, study_uid: str, series_uid: str, series: list[Any], grid: Grid,
                        emission: Grid, on_segments: Callable[[list[Voi]], None] | None = None,
                        ) -> tuple[list[Voi], list[Dataset]]:
    """Fetch the segmentation series; each SEG instance read into VOIs on ``grid`` (in place: it
    was fetched for this job alone), each RTSTRUCT returned to be placed on the CT's grid.
    ``on_segments`` hears the SEG VOIs once all are read."""
    vois: list[Voi] = []
    deferred: list[Dataset] = []
    for ds in fetch_segmentations(client, study_uid, series_uid, series):
        if is_seg(ds):
            # a SEG carries its own geometry: the CT's grid is not needed to place it
            vois.extend(vois_from_dataset(ds, None, _segmentation_grids(ds, grid, grid, emission)[1], copy=False))
        else:
            deferred.append(ds)
    if on_segments is not None and vois:
        on_segments(vois)
    return vois, deferred


def _segmentation_grids(ds: Dataset, ct: Grid, grid: Grid, emission: Grid) -> tuple[Grid, Grid]:
    """Reference and target grids for a segmentation: drawn in the emission image's own Frame of
    Reference (when the CT's is another), it is read on the emission grid as it was written."""
    if emission.frame_of_reference_uid != grid.frame_of_reference_uid and \
            segmentation_frame(ds) == emission.frame_of_reference_uid:
        return emission, emission
    return ct, grid


#: The start of the warning when the RT Dose could not be stored (the worker tells the Task).
RTDOSE_NOT_STORED = "the RT Dose was not stored in the PACS"


#: DoseComment (3004,0006, LO: 64 characters) of the BED map: what its values are, and (as the
#: dose's comment does) whether the treatment was delivered or predicted.
BED_MAP_COMMENT = "Y-90 BED Gy ({}); tumour+liver VOIs, else 0"


def bed_map(dose: np.ndarray, vois: list[Voi], tissues: TissueTable) -> np.ndarray | None:
    """The voxel BED map (Gy), or None when no VOI has tissue parameters. Each voxel takes the
    parameters of its VOI's tissue (a tumour inside the liver: the tumour's); voxels of no liver
    or tumour VOI (lungs, body) are 0 Gy: the map says nothing there."""
    from services.dosimetry.domain.radiobiology import bed_gy

    bed = np.zeros(dose.shape, dtype=np.float64)
    covered = False
    for voi in sorted(vois, key=lambda v: v.role == "tumour"):  # tumours last: they win inside the liver
        tissue = tissue_for_role(voi.role, tissues)
        if tissue is not None and voi.mask.any():
            bed[voi.mask] = bed_gy(dose[voi.mask], tissue)
            covered = True
    return bed if covered else None


def _bed_map_dataset(bed: np.ndarray, grid: Grid, dose_ds: Any, key: str, **rtdose: Any) -> Any:
    """The BED map as an RT Dose in the dose's study and frame: DoseType EFFECTIVE (PS3.3
    C.8.8.3, a dose corrected for biological effect; DICOM CP-2379: a radiobiologically weighted
    dose is EFFECTIVE, not PHYSICAL), DoseComment saying what the values are."""
    ds = build_rtdose(bed, grid, deterministic_key=f"{key}|bed-map", **rtdose)
    ds.DoseType = "EFFECTIVE"
    ds.DoseComment = BED_MAP_COMMENT.format("delivered" if rtdose["delivered"] else "predicted, MAA")
    ds.SeriesNumber = int(dose_ds.SeriesNumber) + 1
    return ds


def _check_complete(activity: list[Any]) -> None:
    """Refuse a PET series with fewer instances than its header announces (still arriving, or
    partly lost): its dose would spread the whole activity over part of the body. The job fails
    naming it; the PACS's next stable-study notification runs it again once complete."""
    first = activity[0]
    header = {k: first.get(k) for k in COMPLETENESS_ATTRIBUTES if k in first}
    why = missing_instances(str(first.get("Modality", "")), len(activity), header)
    if why:
        raise ImagingError(f"series {first.get('SeriesInstanceUID', '')}: {why}; run the job again once the "
                           "PACS holds the whole series", "studyInstanceUid")


def _normalise_over_liver_and_lungs(counts: np.ndarray, vois: list[Voi], warnings: list[str]) -> np.ndarray:
    """An MAA simulation gives the planned Y-90 activity to the liver (with its tumours) and the
    lungs only: MAA counts elsewhere (free pertechnetate in stomach, thyroid, kidneys;
    extrahepatic deposition) are reported, not given activity (EANM 2022 procedure guideline for radioembolisation: lung shunt
    over liver plus lungs). Without a liver or lung VOI the whole field of view is kept."""
    organs = [v for v in vois if v.role in ("liver", "normal-liver", "tumour", "lung")]
    if not any(v.role in ("liver", "lung") for v in organs):
        return counts
    keep = union(organs)
    total = float(counts.sum())
    outside_share = 1.0 - float(counts[keep].sum()) / total if total > 0 else 0.0
    if outside_share >= 0.001:
        warnings.append(f"{100 * outside_share:.1f} % of the MAA counts lie outside the liver and lungs (free "
                        "pertechnetate or extrahepatic uptake?): reported, not given any of the planned Y-90 "
                        "activity, which is normalised over the liver and lungs")
    return np.where(keep, counts, 0.0)
