"""The voxel-dosimetry job: PACS study → dose map → FHIR results (and RT Dose in the PACS).

Progress reports go to the gateway at every pipeline stage; they are also where the job learns
it was cancelled or that its lease was lost, in which case it stops before writing anything.
Results are a ``DiagnosticReport`` and one ``Observation`` per VOI (Dmean, D50, D70, D90, V100,
V120 in Gy / %), with ids determined by the job's parameters, and their ``Provenance``.
"""

from __future__ import annotations

from typing import Any

from netliver.fhir.builders import (
    canonical_json,
    codeable,
    deterministic_id,
    fhir_instant,
    imaging_study_id,
    provenance,
    quantity,
)
from netliver.fhir.codesystems import LOINC, OBSERVATION_CODE_SYSTEM, Concept, add_concepts
from netliver.settings import Settings
from services.dosimetry import __version__
from services.dosimetry.worker.reporter import JobReporter

__all__ = ["METRIC_CODES", "result_resources", "run_voxel_job"]

#: Output metric → (code in OBSERVATION_CODE_SYSTEM, display, UCUM unit).
METRIC_CODES: dict[str, tuple[str, str, str]] = {
    "Dmean": ("dose-mean", "Mean absorbed dose", "Gy"),
    "D50": ("dose-d50", "Minimum dose to the hottest 50 % of the VOI", "Gy"),
    "D70": ("dose-d70", "Minimum dose to the hottest 70 % of the VOI", "Gy"),
    "D90": ("dose-d90", "Minimum dose to the hottest 90 % of the VOI", "Gy"),
    "V100": ("dose-v100", "Share of the VOI volume receiving at least 100 Gy", "%"),
    "V120": ("dose-v120", "Share of the VOI volume receiving at least 120 Gy", "%"),
    "Dmin": ("dose-min", "Minimum absorbed dose", "Gy"),
    "Dmax": ("dose-max", "Maximum absorbed dose", "Gy"),
}

add_concepts("observation-code", *(Concept(code, display) for code, display, _ in METRIC_CODES.values()),
             Concept("voxel-dosimetry-report", "Voxel dosimetry report",
                     "Absorbed-dose report of a post-SIRT or MAA study."))


def run_voxel_job(params: dict[str, Any], reporter: JobReporter, settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """Run the pipeline for one job; return (resources to write, Task outputs, seconds per stage)."""
    from services.dosimetry.imaging.dicomweb import make_client
    from services.dosimetry.imaging.pipeline import run_voxel_dosimetry

    client = make_client(settings.dicomweb_url, user=settings.orthanc_user, password=settings.orthanc_password)
    result = run_voxel_dosimetry(
        client, params["studyInstanceUid"], float(params["administeredActivityGBq"]),
        params.get("method", "ldm"), params.get("segmentationSeriesUid"),
        progress=reporter.progress)
    resources, outputs = result_resources(result.to_json(), params, reporter.job_id)
    from services.dosimetry.imaging.pipeline import RTDOSE_NOT_STORED

    reporter.note = next((w for w in result.warnings if w.startswith(RTDOSE_NOT_STORED)), "")
    return resources, outputs, dict(result.timings_s)


def result_resources(result: dict[str, Any], params: dict[str, Any], job_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """FHIR resources of a pipeline result (``VoxelDosimetryResult.to_json()``)."""
    key = canonical_json(params)
    subject = {"subject": {"reference": params["patient"]}} if params.get("patient") else {}
    study_uid = params["studyInstanceUid"]
    observations: list[dict[str, Any]] = []
    for voi in result["vois"]:
        obs_id = deterministic_id("dosimetry", "voxel-dose", key, voi["name"])
        components = []
        for name, value in voi["metrics"].items():
            if name not in METRIC_CODES or value is None:
                continue
            code, display, unit = METRIC_CODES[name]
            components.append({"code": codeable(OBSERVATION_CODE_SYSTEM, code, display, text=name),
                               "valueQuantity": quantity(round(float(value), 4), unit)})
        components.append({"code": {"text": "VOI volume"}, "valueQuantity": quantity(round(voi["volumeMl"], 2), "mL")})
        components.append({"code": {"text": "VOI mass"}, "valueQuantity": quantity(round(voi["massG"], 2), "g")})
        components.append({"code": {"text": "share of the counts"},
                           "valueQuantity": quantity(round(100 * voi["activityFraction"], 3), "%")})
        observations.append({
            "resourceType": "Observation", "id": obs_id, "status": "final",
            "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "imaging")],
            "code": codeable(OBSERVATION_CODE_SYSTEM, "voxel-dose-metrics", "Voxel dose metrics",
                             text=f"Absorbed dose in {voi['name']}"),
            **subject,
            "bodySite": {"text": f"{voi['name']} ({voi['role']}, {voi['source']} VOI)"},
            "method": {"text": "local deposition (EANM)" if result["method"] == "ldm"
                       else "Y-90 voxel S-value kernel convolution (Lanconelli 2012)"},
            "effectiveDateTime": fhir_instant(),
            "valueQuantity": quantity(round(float(voi["metrics"]["Dmean"]), 4), "Gy"),
            "component": components,
            **({"note": [{"text": "Automatic liver VOI (no segmentation was given)"}]}
               if voi["source"] == "automatic" else {}),
        })
    report_id = deterministic_id("dosimetry", "voxel-report", key)
    lines = [f"Voxel dosimetry ({'local deposition' if result['method'] == 'ldm' else 'kernel convolution'}) "
             f"of study {study_uid}: {result['administeredActivityGBq']:.3g} GBq Y-90"
             f"{' (planned; MAA simulation)' if result['simulation'] else ''}, dose constant "
             f"{result['doseConstant']} Gy·kg/GBq."]
    for voi in result["vois"]:
        m = voi["metrics"]
        lines.append(f"{voi['name']}: Dmean {m['Dmean']:.1f} Gy, D70 {m['D70']:.1f} Gy, D90 {m['D90']:.1f} Gy, "
                     f"V100 {m['V100']:.1f} %")
    if result.get("lungShuntFraction") is not None:
        lines.append(f"Lung shunt fraction from the image: {100 * result['lungShuntFraction']:.1f} %")
    lines.extend(f"Warning: {w}" for w in result.get("warnings", []))
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": report_id, "status": "final",
        "category": [codeable("http://terminology.hl7.org/CodeSystem/v2-0074", "NMS", "Nuclear Medicine")],
        "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "voxel-dosimetry-report",
                             "display": "Voxel dosimetry report"},
                            {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]},
        **subject,
        "effectiveDateTime": fhir_instant(),
        "issued": fhir_instant(),
        "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
        "conclusion": "\n".join(lines),
    }
    if params.get("imagingStudy"):
        report["imagingStudy"] = [{"reference": params["imagingStudy"]}]
    inputs = [{"reference": params["imagingStudy"]}] if params.get("imagingStudy") else [
        {"reference": f"ImagingStudy/{imaging_study_id(study_uid)}", "display": f"DICOM study {study_uid}"}]
    rtdose = result.get("rtDoseSopInstanceUid")
    extra = ([{"role": "derivation", "what": {"display": f"RT Dose {rtdose} stored in the PACS study",
                                               "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{rtdose}"}}}]
             if rtdose else [])
    targets = [{"reference": f"DiagnosticReport/{report_id}"}, *({"reference": f"Observation/{o['id']}"} for o in observations)]
    prov = provenance(targets=targets, service="dosimetry", version=__version__, inputs=inputs,
                      activity="$voxel-dosimetry", extra_entities=extra,
                      policy=[f"{OBSERVATION_CODE_SYSTEM}#dose-constant={result['doseConstant']}",
                              f"job:{job_id}"])
    outputs = [{"type": "DiagnosticReport", "reference": f"DiagnosticReport/{report_id}"},
               *({"type": "Observation", "reference": f"Observation/{o['id']}"} for o in observations)]
    return [report, *observations, prov], outputs
