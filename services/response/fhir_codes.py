"""The codes and extensions the response service's FHIR boundary reads and writes.

Input codes (public contract, "Tumour response"): TumorSize Observations (LOINC 21889-1) with
components LOINC 33728-7 (longest diameter), SNOMED 103340004 (short axis) and the project codes
``viable-diameter``, ``viable-perpendicular-diameter``, ``attenuation``, ``sul-peak``, ``suv-max``;
``method`` SNOMED 77477000 CT / 113091000 MRI / 82918005 PET. Output codes: the response
CodeSystem, with NCI Thesaurus equivalents of the RECIST categories.
"""

from __future__ import annotations

from decimal import Decimal

from netliver.fhir.codesystems import (
    CANONICAL_BASE,
    LOINC,
    OBSERVATION_CODE_SYSTEM,
    SNOMED,
)
from services.response.domain.model import (
    Modality,
)

__all__ = [
    "COARSE",
    "CRF_TREATMENT",
    "CRITERION_DISPLAY",
    "DISEASE_STATUS",
    "FRAGMENT_OF_URL",
    "IMAGING_PROCEDURE_URL",
    "LABS",
    "LONGEST_DIAMETER",
    "LYMPH_NODE",
    "MARKERS",
    "MEASURE_UNIT",
    "MEDDRA",
    "MERGED_INTO_URL",
    "MODALITY",
    "MODALITY_CODE",
    "PERCENT_STEP",
    "PET_REFERENCE",
    "PREVIOUS_TREATMENT_URL",
    "RESPONSE_DISPLAY",
    "RESPONSE_NCIT",
    "SHORT_AXIS",
    "TARGET_BODY_STRUCTURE_URL",
    "TUMOR_SIZE",
]

TARGET_BODY_STRUCTURE_URL = "http://hl7.org/fhir/StructureDefinition/procedure-targetBodyStructure"
FRAGMENT_OF_URL = f"{CANONICAL_BASE}/StructureDefinition/lesion-fragment-of"
MERGED_INTO_URL = f"{CANONICAL_BASE}/StructureDefinition/lesion-merged-into"
PREVIOUS_TREATMENT_URL = f"{CANONICAL_BASE}/StructureDefinition/previous-treatment"
IMAGING_PROCEDURE_URL = f"{CANONICAL_BASE}/StructureDefinition/imaging-procedure"
MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"

TUMOR_SIZE = "21889-1"
LONGEST_DIAMETER = (LOINC, "33728-7")
SHORT_AXIS = (SNOMED, "103340004")
LYMPH_NODE = "59441001"
MODALITY = {"77477000": Modality.CT, "113091000": Modality.MRI, "82918005": Modality.PET}
MODALITY_CODE = {m: (code, {"CT": "Computerized axial tomography", "MRI": "Magnetic resonance imaging",
                             "PET": "Positron emission tomography"}[m.value]) for code, m in MODALITY.items()}
PET_REFERENCE = {"liver-sul-mean": "liver_mean", "liver-sul-sd": "liver_sd",
                  "bloodpool-sul-mean": "bloodpool_mean", "bloodpool-sul-sd": "bloodpool_sd"}

#: Tumour markers: (system, code) → marker key. Chromogranin A LOINC 9811-1; 5-HIAA in urine
#: LOINC 1695-6 (mass/24 h), 31203-3 (mass/volume, 24 h urine), 1694-9 (mass/volume, urine),
#: 14573-0 (moles/24 h), and the project code ``hiaa-5``. Each code is its own series.
MARKERS: dict[tuple[str, str], str] = {
    (LOINC, "9811-1"): "chromogranin-a",
    (LOINC, "1695-6"): "5-hiaa-urine-24h-mass",
    (LOINC, "31203-3"): "5-hiaa-urine-24h-concentration",
    (LOINC, "1694-9"): "5-hiaa-urine-concentration",
    (LOINC, "14573-0"): "5-hiaa-urine-24h-moles",
    (OBSERVATION_CODE_SYSTEM, "hiaa-5"): "5-hiaa",
}

#: CTCAE laboratory inputs: (system, code) → (analyte, unit the grading uses). LOINC codes of
#: the eligibility inputs (docs/eligibility.md) plus ALT 1742-6, AST 1920-8, ALP 6768-6.
LABS: dict[tuple[str, str], tuple[str, str]] = {
    (LOINC, "1975-2"): ("bilirubin", "mg/dL"), (LOINC, "14631-6"): ("bilirubin", "mg/dL"),
    (LOINC, "1742-6"): ("alt", "U/L"), (LOINC, "1920-8"): ("ast", "U/L"),
    (LOINC, "6768-6"): ("alp", "U/L"),
    (LOINC, "777-3"): ("platelets", "10*9/L"), (LOINC, "26515-7"): ("platelets", "10*9/L"),
    (LOINC, "718-7"): ("hemoglobin", "g/dL"), (LOINC, "6690-2"): ("wbc", "10*9/L"),
}

#: Rozenblum et al. (Eur J Radiol) Table 1 "Previous treatment" boxes by therapy code.
CRF_TREATMENT = {
    "surgical-resection": "Surgery", "liver-transplant": "Surgery",
    "ablation-rfa": "Thermal ablation", "ablation-mwa": "Thermal ablation",
    "ablation-laser": "Thermal ablation", "ablation-cryo": "Thermal ablation",
    "ablation-ire": "Ablation (IRE, non-thermal)",
    "tae": "Liver embolization", "ctace": "Liver embolization", "deb-tace": "Liver embolization",
    "sirt": "SIRT", "prrt": "PRRT", "ia-prrt": "PRRT",
}
RESPONSE_NCIT = {"CR": ("C4870", "Complete Remission"), "PR": ("C18058", "Partial Remission"),
         "SD": ("C18213", "Stable Disease"), "PD": ("C35571", "Progressive Disease")}
RESPONSE_DISPLAY = {
    "CR": "Complete response", "PR": "Partial response", "SD": "Stable disease",
    "PD": "Progressive disease", "NE": "Not evaluable",
    "non-CR/non-PD": "Non-CR/non-PD", "iCR": "iRECIST complete response",
    "iPR": "iRECIST partial response", "iSD": "iRECIST stable disease",
    "iUPD": "iRECIST unconfirmed progression", "iCPD": "iRECIST confirmed progression",
    "non-iCR/non-iUPD": "Non-iCR/non-iUPD", "CMR": "Complete metabolic response",
    "PMR": "Partial metabolic response", "SMD": "Stable metabolic disease",
    "PMD": "Progressive metabolic disease",
}
#: mCODE CancerDiseaseStatus (LOINC 97509-4) coarse status (HL7 mCODE STU, SNOMED CT 268910001 improved, 359746009 stable, 271299001 worsened, 709137006 undetermined).
DISEASE_STATUS = {
    "improved": ("268910001", "Patient's condition improved"),
    "stable": ("359746009", "Patient's condition stable"),
    "worsened": ("271299001", "Patient's condition worsened"),
    "undetermined": ("709137006", "Patient condition undetermined"),
}
COARSE = {"CR": "improved", "PR": "improved", "iCR": "improved", "iPR": "improved",
           "CMR": "improved", "PMR": "improved", "SD": "stable", "iSD": "stable", "SMD": "stable",
           "non-CR/non-PD": "stable", "non-iCR/non-iUPD": "stable", "PD": "worsened",
           "iCPD": "worsened", "iUPD": "worsened", "PMD": "worsened"}
CRITERION_DISPLAY = {"recist-1.1": "RECIST 1.1", "mrecist": "mRECIST", "easl": "EASL",
                      "choi": "Choi", "percist": "PERCIST 1.0", "irecist": "iRECIST"}
MEASURE_UNIT = {"mm": ("mm", "mm"), "mm2": ("mm2", "mm2"), "g/mL": ("g/mL", "g/mL")}
PERCENT_STEP = Decimal("0.01")

