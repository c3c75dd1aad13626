"""The codes the eligibility service's FHIR boundary reads and writes.

Input codes come from the rule set's input catalogue (``rules/eligibility-rules.yaml``); the
SNOMED CT and text matches of the project's condition codes follow the CodeSystem
``condition-code`` (:mod:`netliver.fhir.codesystems`). Missing inputs are reported with the codes
an EHR can act on (:func:`data_requirement_codings`).
"""


from typing import Any

from netliver.fhir.codesystems import (
    CANONICAL_BASE,
    DISEASE_STATE_SYSTEM,
    LOINC,
    OBSERVATION_CODE_SYSTEM,
    PRIMARY_SITE_SYSTEM,
)
from netliver.units import (
    BILIRUBIN_G_PER_MOL,
    CREATININE_G_PER_MOL,
)
from services.eligibility.ruleset import input_catalogue

__all__ = [
    "ATC",
    "BUNDLE_TYPES",
    "CODED_INPUTS",
    "CODE_INDEX",
    "CONDITION_SNOMED",
    "CONDITION_TEXT",
    "COUNT_UNITS",
    "DATA_ABSENT_REASON",
    "ECOG_ANSWERS",
    "LIVER_SNOMED",
    "LONGEST_DIAMETER_LOINC",
    "MOLAR_MASS",
    "PROCEDURE_TEXT",
    "RULESET_CANONICAL",
    "SKIP_STATUS",
    "SUPPORTING_INFO_EXTENSION",
    "TUMOR_SIZE_LOINC",
    "data_requirement_codings",
]

BUNDLE_TYPES = frozenset({"collection", "searchset", "transaction"})
ATC = "http://www.whocc.no/atc"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
SUPPORTING_INFO_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-supportingInfo"
LIVER_SNOMED = "10200004"
TUMOR_SIZE_LOINC = "21889-1"
LONGEST_DIAMETER_LOINC = "33728-7"
RULESET_CANONICAL = f"{CANONICAL_BASE}/eligibility-rules"

#: SNOMED CT codes accepted for the project's condition codes (SNOMED CT concepts of the conditions in the condition-code CodeSystem).
CONDITION_SNOMED = {
    "389026000": "ascites",
    "17920008": "portal-vein-thrombosis",
    "698247007": "cardiac-arrhythmia",
}
#: Text fallback (lower-case fragments) when a condition is not coded; the reason says so.
CONDITION_TEXT = {
    "ascites": "ascites",
    "portal vein thrombosis": "portal-vein-thrombosis",
    "portal vein obstruction": "portal-vein-thrombosis",
    "bilio-enteric anastomosis": "bilioenteric-anastomosis",
    "bilioenteric anastomosis": "bilioenteric-anastomosis",
    "hepaticojejunostomy": "bilioenteric-anastomosis",
    "sphincterotomy": "sphincterotomy",
    "biliary dilatation": "biliary-dilatation",
    "coagulopathy": "irreversible-coagulopathy",
    "contrast allergy": "contrast-allergy",
    "contrast media": "contrast-allergy",
    "iodinated contrast": "contrast-allergy",
    "arrhythmia": "cardiac-arrhythmia",
    "pacemaker": "cardiac-arrhythmia",
    "atrial fibrillation": "cardiac-arrhythmia",
}

#: Procedures (by text) that leave a bilio-enteric anastomosis or a sphincterotomy: read into the
#: problem list, since the record often holds only the operation (e.g. a Whipple for a pancreatic NET).
PROCEDURE_TEXT = {
    "whipple": "bilioenteric-anastomosis",
    "pancreaticoduodenectomy": "bilioenteric-anastomosis",
    "pancreatoduodenectomy": "bilioenteric-anastomosis",
    "hepaticojejunostomy": "bilioenteric-anastomosis",
    "choledochojejunostomy": "bilioenteric-anastomosis",
    "choledochoduodenostomy": "bilioenteric-anastomosis",
    "bilio-enteric anastomosis": "bilioenteric-anastomosis",
    "bilioenteric anastomosis": "bilioenteric-anastomosis",
    "sphincterotomy": "sphincterotomy",
}

#: LOINC answer list LL529-9 (ECOG performance status) → grade.
ECOG_ANSWERS = {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4, "LA9627-6": 5}
_SYSTEMS = {"loinc": LOINC, "project": OBSERVATION_CODE_SYSTEM}
MOLAR_MASS = {"bilirubin": BILIRUBIN_G_PER_MOL, "creatinine": CREATININE_G_PER_MOL}
CODED_INPUTS = {"primary_site": PRIMARY_SITE_SYSTEM, "extrahepatic_state": DISEASE_STATE_SYSTEM,
                 "liver_state": DISEASE_STATE_SYSTEM}
COUNT_UNITS = {"", "1", "{score}", "{grade}", "{lesions}", "{count}", "{#}", "{INR}", "{ratio}"}
SKIP_STATUS = frozenset({"entered-in-error", "cancelled"})


def _code_index() -> dict[tuple[str, str], str]:
    index: dict[tuple[str, str], str] = {}
    for name, spec in input_catalogue().items():
        for item in spec.get("codes", ()):
            system = _SYSTEMS.get(str(item["system"]))
            if system is not None and name not in {"age", "lesion_count", "max_lesion_diameter", "liver_stable_months"}:
                index[(system, str(item["code"]))] = name
    index.pop((LOINC, TUMOR_SIZE_LOINC), None)
    return index


CODE_INDEX = _code_index()


def data_requirement_codings(name: str) -> list[dict[str, Any]]:
    """Codings an EHR can act on for a missing input (LOINC or project code)."""
    spec = input_catalogue().get(name, {})
    out = []
    for item in spec.get("codes", ()):
        system = _SYSTEMS.get(str(item["system"]))
        if system is None:
            continue
        coding: dict[str, Any] = {"system": system, "code": str(item["code"])}
        if item.get("display"):
            coding["display"] = str(item["display"])
        out.append(coding)
    if not out:
        out.append({"system": f"{CANONICAL_BASE}/eligibility-input", "code": name})
    return out

