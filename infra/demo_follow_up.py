"""Builders of `$tumor-response` input Bundles (synthetic patients, no real data), for the demo,
the benchmark and the tests.

:func:`synthetic_follow_up_bundle` is one realistic patient used by the demo and the tests: a
small-intestinal NET with liver metastases, baseline CT before SIRT, three follow-ups (3, 6 and
9 months), one lesion ablated between the second and third follow-up, a lesion first seen on a
new PET tracer, chromogranin A and 5-HIAA, and post-treatment labs. The smaller builders make
single lesion Observations, BodyStructures, Procedures and lab values in the contract's coding.
"""

from __future__ import annotations

from typing import Any

from netliver.fhir.codesystems import (
    LESION_ROLE_SYSTEM,
    LOINC,
    NON_TARGET_STATUS_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
    SNOMED,
    THERAPY_SYSTEM,
    UCUM,
)

__all__ = [
    "body_structure",
    "bundle",
    "lab",
    "lesion",
    "marker",
    "pet_reference",
    "procedure",
    "synthetic_follow_up_bundle",
]

PATIENT = "response-demo-patient"
#: SNOMED CT codes used below: liver 10200004, lymph node 59441001, lung 39607008.
LIVER, LYMPH_NODE, LUNG = "10200004", "59441001", "39607008"
#: Imaging methods (mCODE): CT, MRI, PET.
CT, MRI, PET = "77477000", "113091000", "82918005"


def _mm(value: float | str) -> dict[str, Any]:
    number = float(value) if isinstance(value, str) else value
    return {"value": number, "unit": "mm", "system": UCUM, "code": "mm"}


def body_structure(lesion_id: str, site: str = LIVER, display: str = "Liver", *,
                   node: bool = False) -> dict[str, Any]:
    """A lesion's identity; a lymph node has location SNOMED 59441001."""
    location = {"coding": [{"system": SNOMED, "code": LYMPH_NODE if node else site,
                            "display": "Lymph node" if node else display}], "text": display}
    return {"resourceType": "BodyStructure", "id": lesion_id, "location": location,
            "patient": {"reference": f"Patient/{PATIENT}"}}


def lesion(obs_id: str, lesion_id: str, when: str, role: str = "target", *,
           longest: float | str | None = None, short: float | str | None = None,
           viable: float | str | None = None, viable_perpendicular: float | str | None = None,
           hu: float | None = None, sul_peak: float | None = None, suv_max: float | None = None,
           status: str | None = None, method: str | None = CT, too_small: bool = False,
           fragment_of: str | None = None, merged_into: str | None = None,
           subject: str = PATIENT) -> dict[str, Any]:
    """A TumorSize Observation (LOINC 21889-1) of one lesion at one assessment."""
    comps: list[dict[str, Any]] = []
    if longest is not None:
        comps.append({"code": {"coding": [{"system": LOINC, "code": "33728-7"}]}, "valueQuantity": _mm(longest)})
    elif too_small:
        comps.append({"code": {"coding": [{"system": LOINC, "code": "33728-7"}]},
                      "dataAbsentReason": {"coding": [{"system": OBSERVATION_CODE_SYSTEM,
                                                       "code": "too-small-to-measure"}]}})
    if short is not None:
        comps.append({"code": {"coding": [{"system": SNOMED, "code": "103340004"}]}, "valueQuantity": _mm(short)})
    if viable is not None:
        comps.append({"code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "viable-diameter"}]},
                      "valueQuantity": _mm(viable)})
    if viable_perpendicular is not None:
        comps.append({"code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM,
                                           "code": "viable-perpendicular-diameter"}]},
                      "valueQuantity": _mm(viable_perpendicular)})
    if hu is not None:
        comps.append({"code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "attenuation"}]},
                      "valueQuantity": {"value": hu, "unit": "HU", "system": UCUM, "code": "[hnsf'U]"}})
    if sul_peak is not None:
        comps.append({"code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "sul-peak"}]},
                      "valueQuantity": {"value": sul_peak, "unit": "g/mL", "system": UCUM, "code": "g/mL"}})
    if suv_max is not None:
        comps.append({"code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "suv-max"}]},
                      "valueQuantity": {"value": suv_max, "unit": "g/mL", "system": UCUM, "code": "g/mL"}})
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": obs_id, "status": "final",
        "category": [{"coding": [{"system": LESION_ROLE_SYSTEM, "code": role}]}],
        "code": {"coding": [{"system": LOINC, "code": "21889-1", "display": "Size Tumor"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": when,
        "focus": [{"reference": f"BodyStructure/{lesion_id}"}],
    }
    if comps:
        obs["component"] = comps
    if status:
        obs["valueCodeableConcept"] = {"coding": [{"system": NON_TARGET_STATUS_SYSTEM, "code": status}]}
    if method:
        obs["method"] = {"coding": [{"system": SNOMED, "code": method}]}
    ext = []
    if fragment_of:
        ext.append({"url": "https://netliver.org/fhir/StructureDefinition/lesion-fragment-of",
                    "valueReference": {"reference": f"BodyStructure/{fragment_of}"}})
    if merged_into:
        ext.append({"url": "https://netliver.org/fhir/StructureDefinition/lesion-merged-into",
                    "valueReference": {"reference": f"BodyStructure/{merged_into}"}})
    if ext:
        obs["extension"] = ext
    return obs


def pet_reference(obs_id: str, code: str, when: str, value: float) -> dict[str, Any]:
    """A PERCIST reference value (liver-sul-mean, liver-sul-sd, bloodpool-sul-mean/sd)."""
    return {"resourceType": "Observation", "id": obs_id, "status": "final",
            "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": code}]},
            "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "g/mL", "system": UCUM, "code": "g/mL"}}


def procedure(proc_id: str, therapy: str, when: str, *targets: str) -> dict[str, Any]:
    """A treatment coded from THERAPY_SYSTEM, optionally targeting lesions."""
    out: dict[str, Any] = {
        "resourceType": "Procedure", "id": proc_id, "status": "completed",
        "code": {"coding": [{"system": THERAPY_SYSTEM, "code": therapy}]},
        "subject": {"reference": f"Patient/{PATIENT}"}, "performedDateTime": when,
    }
    if targets:
        out["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/procedure-targetBodyStructure",
                             "valueReference": {"reference": f"BodyStructure/{t}"}} for t in targets]
    return out


def lab(obs_id: str, loinc: str, when: str, value: float, unit: str, *,
        low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """A laboratory Observation (LOINC) with an optional reference range."""
    out: dict[str, Any] = {
        "resourceType": "Observation", "id": obs_id, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }
    rng: dict[str, Any] = {}
    if low is not None:
        rng["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
    if high is not None:
        rng["high"] = {"value": high, "unit": unit, "system": UCUM, "code": unit}
    if rng:
        out["referenceRange"] = [rng]
    return out


def marker(obs_id: str, code: str, when: str, value: float, unit: str, system: str = LOINC) -> dict[str, Any]:
    """A tumour marker: chromogranin A LOINC 9811-1, urinary 5-HIAA LOINC 1695-6 (or hiaa-5)."""
    return {"resourceType": "Observation", "id": obs_id, "status": "final",
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle of the given resources."""
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"https://ehr.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                      for r in resources]}


def synthetic_follow_up_bundle() -> dict[str, Any]:
    """Baseline (CT + FDG PET) before SIRT, follow-ups at 3, 6 and 9 months.

    Targets: two liver lesions (seg VIII 42 mm, seg II 30 mm) and a para-aortic node (18 mm
    short axis); one non-target liver lesion. Lesion L2 is ablated (MWA) between the 6- and
    9-month scans. At 9 months a lesion is seen only on a new 68Ga-DOTATOC MRI/PET protocol (MRI
    was never used before): a new baseline lesion, not progression. Markers fall; bilirubin and
    ALT rise mildly after SIRT.
    """
    b, f1, f2, f3 = "2025-01-10", "2025-04-10", "2025-07-10", "2025-10-10"
    res: list[dict[str, Any]] = [
        body_structure("L1", LIVER, "Liver segment VIII"),
        body_structure("L2", LIVER, "Liver segment II"),
        body_structure("N1", display="Para-aortic lymph node", node=True),
        body_structure("NT1", LIVER, "Liver segment VI"),
        body_structure("X1", LIVER, "Liver segment IVa"),
        procedure("prev-tace", "ctace", "2024-06-01"),
        procedure("sirt-1", "sirt", "2025-01-20"),
        procedure("mwa-1", "ablation-mwa", "2025-08-01", "L2"),
    ]
    measures = {  # lesion: (longest, short, viable, HU, SULpeak) per assessment
        b: {"L1": (42, None, 38, 85, 6.2), "L2": (30, None, 27, 80, 4.8), "N1": (25, 18, None, 60, 3.1)},
        f1: {"L1": (36, None, 20, 60, 3.9), "L2": (27, None, 15, 62, 3.5), "N1": (22, 14, None, 55, 2.4)},
        f2: {"L1": (31, None, 12, 52, 2.6), "L2": (25, None, 10, 58, 2.9), "N1": (20, 12, None, 50, 2.0)},
        f3: {"L1": (30, None, 10, 50, 2.4), "L2": (28, None, 0, 35, 1.2), "N1": (19, 11, None, 48, 1.9)},
    }
    refs = {b: (2.1, 0.3), f1: (2.0, 0.3), f2: (2.2, 0.25), f3: (2.1, 0.3)}
    for k, (when, lesions) in enumerate(measures.items()):
        for lid, (longest, short, viable, hu, sul) in lesions.items():
            res.append(lesion(f"obs-{lid}-{k}", lid, when, "target", longest=longest, short=short,
                              viable=viable, viable_perpendicular=None if viable is None else max(viable - 4, 0),
                              hu=hu, sul_peak=sul))
        res.append(lesion(f"obs-NT1-{k}", "NT1", when, "non-target",
                          status=None if k == 0 else "present", longest=14 if k == 0 else None))
        mean, sd = refs[when]
        res.append(pet_reference(f"liver-mean-{k}", "liver-sul-mean", when, mean))
        res.append(pet_reference(f"liver-sd-{k}", "liver-sul-sd", when, sd))
    res.append(lesion("obs-X1-3", "X1", f3, "new", longest=8, method=MRI))
    for k, (when, cga, hiaa) in enumerate([("2025-01-08", 480.0, 95.0), ("2025-04-08", 250.0, 60.0),
                                           ("2025-07-08", 210.0, 41.0), ("2025-10-08", 190.0, 38.0)]):
        res.append(marker(f"cga-{k}", "9811-1", when, cga, "ug/L"))
        res.append(marker(f"hiaa-{k}", "1695-6", when, hiaa, "umol/(24.h)"))
    labs: list[tuple[str, str, str, list[float]]] = [("bili", "1975-2", "mg/dL", [0.8, 2.1, 1.1]), ("alt", "1742-6", "U/L", [30, 110, 45]),
            ("ast", "1920-8", "U/L", [28, 75, 35]), ("alp", "6768-6", "U/L", [100, 180, 130]),
            ("plt", "777-3", "10*3/uL", [210, 140, 180]), ("hb", "718-7", "g/dL", [13.1, 11.8, 12.4]),
            ("wbc", "6690-2", "10*3/uL", [6.2, 3.4, 5.0])]
    for name, code, unit, values in labs:
        for k, (when, value) in enumerate(zip(["2025-01-15", "2025-02-03", "2025-04-10"], values, strict=True)):
            res.append(lab(f"{name}-{k}", code, when, value, unit))
    return bundle(*res)
