"""The dosimetry operations without HTTP or Celery: what the Flask view, the worker task, the
demo, the benchmark and the tests call.

- :func:`sirt_activity`: ``$sirt-activity`` Parameters in, ``OperationResult`` out (a 422
  ``FhirError`` naming the parameter for unusable input; a contraindicated plan is a result).
- :func:`dose_comparison`: ``$dose-comparison`` (predicted vs delivered voxel results, per VOI).
- :func:`voxel_dosimetry`: one ``$voxel-dosimetry`` job on a PACS study, with progress reports;
  the results to write and the Task outputs out (the worker hands them to the gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from netliver.fhir.builders import OperationResult
from netliver.settings import Settings
from services.dosimetry import __version__
from services.dosimetry.domain.comparison import compare_doses
from services.dosimetry.domain.cumulative import AGREEMENT_TOLERANCE_GY, PriorDoses, prior_doses
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.planning import plan_sirt
from services.dosimetry.domain.radiobiology import TissueRadiobiology, TissueTable
from services.dosimetry.fhir_in import (
    SirtRequest,
    comparison_error,
    dose_records,
    input_error,
    parse_comparison_request,
    parse_sirt_request,
    voxel_job_request,
)
from services.dosimetry.fhir_out import (
    comparison_result,
    plan_observation_id,
    sirt_result,
    voxel_results,
)

if TYPE_CHECKING:
    from services.dosimetry.imaging.voi_types import Voi

__all__ = ["VoxelJobOutcome", "dose_comparison", "sirt_activity", "tissue_table", "voxel_dosimetry"]


def sirt_activity(body: Mapping[str, Any], version: str = __version__) -> OperationResult:
    """``$sirt-activity``: the plan's output Parameters and the Observation and Provenance to write.

    With ``patient``, the prior lung dose is the sum over the patient's earlier treatments in
    the stored records the gateway added (:mod:`services.dosimetry.domain.cumulative`)."""
    request = None
    try:
        request = parse_sirt_request(body)
        prior = _prior(request)
        inputs = request.inputs
        if prior is not None and prior.treatments:
            inputs = replace(inputs, prior_lung_dose_gy=prior.lung_gy)
        plan = plan_sirt(inputs)
    except DosimetryInputError as err:
        raise input_error(err, request) from None
    return sirt_result(plan, request, version, prior)


def _prior(request: SirtRequest) -> PriorDoses | None:
    """The patient's earlier treatments; a ``priorLungDoseGy`` the records contradict is refused."""
    if request.patient is None:
        return None
    before = request.inputs.treatment_time.date() if request.inputs.treatment_time else None
    prior = prior_doses(dose_records(request.records, f"Observation/{plan_observation_id(request)}"), before)
    given = request.inputs.prior_lung_dose_gy
    if prior.treatments and "priorLungDoseGy" in request.locations and \
            abs(given - prior.lung_gy) > AGREEMENT_TOLERANCE_GY:
        raise DosimetryInputError("prior_lung_dose_gy", f"{given:g} Gy given, but the patient's records give "
                                  f"{prior.lung_gy:.2f} Gy ({', '.join(prior.records)}): leave it out, or correct "
                                  "the records")
    return prior


@dataclass(frozen=True)
class VoxelJobOutcome:
    """A finished voxel job: resources to write, Task outputs, and seconds per pipeline stage."""

    resources: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    timings_s: dict[str, float] = field(default_factory=dict)
    #: What the finished Task's statusReason should say (the RT Dose was not stored), or "".
    note: str = ""


def dose_comparison(body: Mapping[str, Any], version: str = __version__) -> OperationResult:
    """``$dose-comparison``: the two voxel results (with their Observations, added by the gateway)
    compared VOI by VOI; a DiagnosticReport, its Observations and Provenance to write."""
    request = parse_comparison_request(body)
    try:
        comparison = compare_doses(request.predicted, request.delivered)
    except DosimetryInputError as err:
        raise comparison_error(err) from None
    return comparison_result(comparison, request, version)


def tissue_table(settings: Settings) -> TissueTable:
    """The BED tissue parameters of the settings (``BED_*``)."""
    try:
        return TissueTable(
            tumour=TissueRadiobiology("tumour", settings.bed_tumour_alpha_beta_gy, settings.bed_tumour_repair_h,
                                      "BED_TUMOUR_ALPHA_BETA_GY, BED_TUMOUR_REPAIR_H"),
            liver=TissueRadiobiology("normal-liver", settings.bed_liver_alpha_beta_gy, settings.bed_liver_repair_h,
                                     "BED_LIVER_ALPHA_BETA_GY, BED_LIVER_REPAIR_H"))
    except DosimetryInputError as err:
        raise ValueError(f"BED settings: {err}") from None


def voxel_dosimetry(params: Mapping[str, Any], job_id: str, client: Any,
                    progress: Callable[[str, float], None] | None = None, *,
                    version: str = __version__, tissues: TissueTable | None = None,
                    find_body_structure: Callable[[str, str], str | None] | None = None,
                    store_bed_map: bool = False) -> VoxelJobOutcome:
    """Run the voxel pipeline for one job on the PACS behind ``client`` (a DICOMweb client).

    Raises the pipeline's ``ImagingError`` subclasses (the job fails with their reason) and
    whatever ``progress`` raises (the worker's cancellation and lease checks).
    """
    # The imaging stack (DICOM readers, the dose engine) loads only where jobs run, not in the
    # HTTP service that plans $sirt-activity.
    from services.dosimetry.imaging.pipeline import RTDOSE_NOT_STORED, run_voxel_dosimetry

    request = voxel_job_request(params)
    # A tumour VOI is a lesion: its BodyStructure by TrackingUID, else by label (the gateway
    # looks). A SEG's lesions are looked up as soon as it is read, while the CT still arrives (a
    # look-up is a round trip to the gateway, ~15-20 ms each at clinical size); an RTSTRUCT's
    # once the job has placed them.
    early: dict[tuple[str, str], Future[str | None]] = {}
    with ThreadPoolExecutor(2, thread_name_prefix=f"lesions-{job_id}") as lookups:
        def look_up(vois: list[Voi]) -> None:
            for voi in vois:
                if voi.role == "tumour" and find_body_structure is not None:
                    early.setdefault((voi.tracking_uid, voi.name),
                                     lookups.submit(find_body_structure, voi.tracking_uid, voi.name))

        result = run_voxel_dosimetry(client, request.study_uid, request.administered_activity_gbq, request.method,
                                     request.segmentation_series_uid, progress=progress, tissues=tissues,
                                     registration_series_uid=request.registration_series_uid,
                                     store_bed_map=store_bed_map,
                                     on_segments=look_up if find_body_structure is not None else None)
        lesions: dict[str, str] = {}
        if find_body_structure is not None:
            for voi in result.vois:
                if voi.role != "tumour":
                    continue
                looked_up = early.get((voi.tracking_uid, voi.name))
                ref = looked_up.result() if looked_up is not None else find_body_structure(voi.tracking_uid, voi.name)
                if ref:
                    lesions[voi.name] = ref
    results = voxel_results(result, request, job_id, version, lesions)
    note = next((w for w in result.warnings if w.startswith(RTDOSE_NOT_STORED)), "")
    return VoxelJobOutcome(results.resources, results.outputs, dict(result.timings_s), note)
