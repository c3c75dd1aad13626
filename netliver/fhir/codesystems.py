"""The project's CodeSystems (public contract, "The project's CodeSystems").

Each system lives under the canonical base ``https://netliver.org/fhir`` and is served by the
gateway at ``GET /fhir/CodeSystem/{id}``. The concepts here are the single source: services
import the URL constants, the gateway publishes :func:`codesystem_resource`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CANONICAL_BASE",
    "CODESYSTEMS",
    "CONDITION_CODE_SYSTEM",
    "DISEASE_STATE_SYSTEM",
    "LESION_ROLE_SYSTEM",
    "LOINC",
    "NON_TARGET_STATUS_SYSTEM",
    "OBSERVATION_CODE_SYSTEM",
    "PRIMARY_SITE_SYSTEM",
    "RESPONSE_SYSTEM",
    "SNOMED",
    "STATUS_SYSTEM",
    "THERAPY_SYSTEM",
    "UCUM",
    "codesystem_resource",
]

CANONICAL_BASE = "https://netliver.org/fhir"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"

THERAPY_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/therapy"
STATUS_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/eligibility-status"
OBSERVATION_CODE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/observation-code"
CONDITION_CODE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/condition-code"
PRIMARY_SITE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/primary-site"
DISEASE_STATE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/disease-state"
LESION_ROLE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/lesion-role"
NON_TARGET_STATUS_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/non-target-status"
RESPONSE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/response"


@dataclass(frozen=True)
class Concept:
    code: str
    display: str
    definition: str = ""


@dataclass(frozen=True)
class CodeSystemDef:
    id: str
    name: str
    title: str
    description: str
    concepts: tuple[Concept, ...]

    @property
    def url(self) -> str:
        return f"{CANONICAL_BASE}/CodeSystem/{self.id}"

    def codes(self) -> frozenset[str]:
        return frozenset(c.code for c in self.concepts)


C = Concept

_THERAPY = CodeSystemDef(
    "therapy", "NetliverTherapy", "Liver-directed and systemic therapies",
    "Therapies evaluated for liver metastases of neuroendocrine and thyroid cancers; also codes "
    "previous treatments recorded as Procedures.",
    (
        C("surgical-resection", "Surgical resection", "Hepatic resection, curative or debulking."),
        C("liver-transplant", "Liver transplantation", "Orthotopic liver transplantation (Milan-NET criteria)."),
        C("ablation-rfa", "Radiofrequency ablation"),
        C("ablation-mwa", "Microwave ablation"),
        C("ablation-laser", "Laser ablation"),
        C("ablation-cryo", "Cryoablation"),
        C("ablation-ire", "Irreversible electroporation"),
        C("tae", "Transarterial embolisation (bland)"),
        C("ctace", "Conventional transarterial chemoembolisation (Lipiodol)"),
        C("deb-tace", "Transarterial chemoembolisation with drug-eluting beads"),
        C("sirt", "Selective internal radiation therapy (Y-90 radioembolisation)"),
        C("prrt", "Peptide receptor radionuclide therapy (177Lu-DOTATATE, systemic)"),
        C("ia-prrt", "Intra-arterial peptide receptor radionuclide therapy (clinical trials only)"),
    ),
)

_STATUS = CodeSystemDef(
    "eligibility-status", "NetliverEligibilityStatus", "Eligibility status",
    "Outcome of evaluating one therapy for one patient.",
    (
        C("eligible", "Eligible", "Indication met; no contraindication or warning met."),
        C("eligible-with-caution", "Eligible with caution", "Only relative contraindications or warnings met."),
        C("ineligible", "Ineligible", "An absolute contraindication is met or the indication is certainly not met."),
        C("insufficient-data", "Insufficient data", "An unknown input could change the answer."),
    ),
)

_OBSERVATION = CodeSystemDef(
    "observation-code", "NetliverObservationCode", "Observation codes with no standard code",
    "Inputs and outputs of the netliver services for which no standard LOINC or SNOMED CT code "
    "was found.",
    (
        C("lung-shunt-fraction", "Lung shunt fraction", "Share of Tc-99m MAA counts in the lungs, valueQuantity in %."),
        C("liver-tumor-burden", "Liver tumour burden", "Share of liver volume replaced by tumour, valueQuantity in %."),
        C("liver-lesion-count", "Number of liver lesions", "valueInteger."),
        C("krenning-score", "Krenning score", "Somatostatin-receptor uptake grade 0-4 relative to liver and spleen, valueInteger."),
        C("primary-site", "Primary tumour site", "valueCodeableConcept from the primary-site CodeSystem."),
        C("primary-resected", "Primary tumour resected", "valueBoolean."),
        C("extrahepatic-disease", "Extrahepatic disease state", "valueCodeableConcept from disease-state; effectivePeriod.start = since when."),
        C("liver-disease-state", "Liver disease state", "valueCodeableConcept from disease-state; effectivePeriod.start = since when."),
        C("ssa-refractory", "Refractory to somatostatin analogues", "valueBoolean: progression or persistent symptoms despite SSA."),
        C("child-pugh", "Child-Pugh class", "valueString A, B or C."),
        C("viable-diameter", "Viable tumour diameter", "Longest diameter of the arterially enhancing part, mm (mRECIST, EASL)."),
        C("attenuation", "Lesion attenuation", "Mean attenuation, Hounsfield units (Choi)."),
        C("sul-peak", "SULpeak", "Peak standardised uptake value normalised to lean body mass, g/mL (PERCIST)."),
        C("liver-sul-mean", "Liver SUL mean", "Mean SUL of a 3 cm ROI in the normal right liver lobe (PERCIST reference)."),
        C("liver-sul-sd", "Liver SUL standard deviation"),
        C("bloodpool-sul-mean", "Blood-pool SUL mean", "Descending aorta reference when the liver is diseased (PERCIST)."),
        C("bloodpool-sul-sd", "Blood-pool SUL standard deviation"),
        C("hiaa-5", "5-HIAA", "Urinary 5-hydroxyindoleacetic acid."),
        C("viable-perpendicular-diameter", "Viable tumour perpendicular diameter", "Largest viable diameter perpendicular to viable-diameter, mm (EASL)."),
        C("suv-max", "SUVmax", "Maximum standardised uptake value of a lesion (case-report form)."),
        C("too-small-to-measure", "Too small to measure", "dataAbsentReason of a lesion diameter: present but too small to measure (RECIST 1.1: 5 mm)."),
        C("sirt-activity-plan", "SIRT activity plan", "A planned Y-90 activity with its predicted doses."),
        # components of a sirt-activity-plan Observation, named like the $sirt-activity outputs
        C("activityGBq", "Planned Y-90 activity at treatment time", "GBq."),
        C("activityAtCalibrationGBq", "Planned Y-90 activity at calibration time", "GBq."),
        C("tumorDoseGy", "Predicted mean tumour absorbed dose", "Gy."),
        C("normalLiverDoseGy", "Predicted mean normal-liver absorbed dose", "Gy."),
        C("perfusedLiverDoseGy", "Predicted mean absorbed dose of the perfused liver", "Gy."),
        C("lungDoseGy", "Predicted lung absorbed dose of this treatment", "Gy."),
        C("cumulativeLungDoseGy", "Predicted cumulative lung absorbed dose", "Gy, prior treatments included."),
        C("doseConstant", "Dose constant used (Gy·kg/GBq)", "49.67 EANM 2022, 50 TheraSphere, 49.38 AAPM."),
        C("lsfReduction", "Activity reduction for lung shunting (fraction)"),
        C("limitingFactor", "Constraint that determined the activity",
          "tumor-target, normal-liver-limit, lung-limit, bsa or mird."),
        C("status", "SIRT plan status", "ok, caution or contraindicated."),
        # the targets and limits a plan was checked against (component code.text: where each came from)
        C("tumorTargetGy", "Tumour absorbed-dose target (minimum)", "Gy: targetDoseGy of a partition plan, else the protocol's."),
        C("perfusedTargetGy", "Perfused-liver absorbed-dose target", "Gy: targetDoseGy of a MIRD plan, else the protocol's."),
        C("normalLiverLimitGy", "Normal-liver absorbed-dose limit (maximum)", "Gy: normalLiverLimitGy given, else the protocol's."),
        C("lungLimitGy", "Lung absorbed-dose limit per treatment (maximum)", "Gy: lungLimitGy, 30 Gy by default (EANM 2022)."),
        C("cumulativeLungLimitGy", "Cumulative lung absorbed-dose limit (maximum)",
          "Gy: cumulativeLungLimitGy, 50 Gy by default (EANM 2022)."),
        C("voxel-dose-metrics", "Voxel dose metrics", "Absorbed-dose metrics of one VOI from voxel dosimetry."),
        # components of a voxel-dose-metrics Observation (EANM 2022 dose-volume metrics)
        C("dose-mean", "Mean absorbed dose"),
        C("dose-d50", "Minimum dose to the hottest 50 % of the VOI"),
        C("dose-d70", "Minimum dose to the hottest 70 % of the VOI"),
        C("dose-d90", "Minimum dose to the hottest 90 % of the VOI"),
        C("dose-v100", "Share of the VOI volume receiving at least 100 Gy"),
        C("dose-v120", "Share of the VOI volume receiving at least 120 Gy"),
        C("dose-min", "Minimum absorbed dose"),
        C("dose-max", "Maximum absorbed dose"),
        # radiobiology components of a voxel-dose-metrics Observation (Dale 1985 permanent implant;
        # tumour and normal-liver VOIs only)
        C("dose-simulation", "Predicted dose of an MAA simulation",
          "Category of a voxel-dose-metrics Observation computed on a Tc-99m MAA study (a prediction, "
          "not a delivered dose)."),
        C("bed-mean", "Mean biologically effective dose", "Gy; mean of the voxel BED map over the VOI."),
        C("eqd2-mean", "Mean equivalent dose in 2 Gy fractions", "Gy; mean BED / (1 + 2 Gy / (α/β))."),
        C("bed-d70", "Minimum BED to the hottest 70 % of the VOI", "Gy (BED70)."),
        C("alpha-beta", "α/β ratio used for the BED", "Gy."),
        C("repair-half-time", "Repair half-time used for the BED", "h."),
        C("dose-comparison", "Predicted versus delivered dose of one VOI",
          "Tc-99m MAA simulation against the post-treatment Y-90 image ($dose-comparison)."),
        C("dose-comparison-report", "Predicted versus delivered dose report"),
        # components of a dose-comparison Observation: predicted, delivered, delivered − predicted
        # (Gy, or % points for V100) and that difference in % of the predicted value
        C("predicted-dose-mean", "Predicted mean absorbed dose", "Gy (MAA simulation)."),
        C("delivered-dose-mean", "Delivered mean absorbed dose", "Gy (post-treatment Y-90 image)."),
        C("dose-mean-difference", "Delivered minus predicted mean absorbed dose", "Gy."),
        C("dose-mean-difference-percent", "Mean absorbed dose difference in % of the predicted", "%."),
        C("predicted-dose-d70", "Predicted D70", "Gy."),
        C("delivered-dose-d70", "Delivered D70", "Gy."),
        C("dose-d70-difference", "Delivered minus predicted D70", "Gy."),
        C("dose-d70-difference-percent", "D70 difference in % of the predicted", "%."),
        C("predicted-dose-v100", "Predicted V100", "%."),
        C("delivered-dose-v100", "Delivered V100", "%."),
        C("dose-v100-difference", "Delivered minus predicted V100", "% points."),
        C("dose-v100-difference-percent", "V100 difference in % of the predicted", "%."),
        C("dose-discrepancy", "Tumour mean dose differs by more than 20 %",
          "valueBoolean: delivered tumour Dmean differs from the predicted by more than 20 % of it."),
        C("lung-shunt-comparison", "Predicted versus delivered lung shunt fraction"),
        C("lung-shunt-predicted", "Lung shunt fraction of the MAA simulation", "%."),
        C("lung-shunt-delivered", "Lung shunt fraction of the post-treatment image", "%."),
        C("lesion-dose-response", "Absorbed dose and response of one lesion",
          "focus → the lesion's BodyStructure; components dose-mean, bed-mean, lesion sizes and lesion-response."),
        C("dose-response-report", "Dose-response per lesion",
          "Per lesion: absorbed dose, BED, baseline and latest size, % change, response under the chosen criterion."),
        C("lesion-baseline-size", "Lesion size at baseline", "mm: the criterion's measure of the lesion."),
        C("lesion-latest-size", "Lesion size at the latest assessment", "mm."),
        C("lesion-size-change", "Change of the lesion's size from baseline", "%."),
        C("lesion-response", "Response of the lesion alone",
          "valueCodeableConcept from RESPONSE_SYSTEM (CR, PR, SD, PD): the criterion's thresholds on this lesion."),
        C("voxel-dosimetry-report", "Voxel dosimetry report", "Absorbed-dose report of a post-SIRT or MAA study."),
        C("eligibility-summary", "Eligibility summary", "Tumour-board summary of an eligibility evaluation."),
        C("hilar-lesion", "Lesion at the hepatic hilum",
          "valueBoolean: a liver lesion lies at the hilum or next to the main bile ducts (eligibility input)."),
        C("perivascular-lesion", "Lesion abutting a vessel of 3 mm or more",
          "valueBoolean: heat-sink risk for thermal ablation (eligibility input)."),
        C("resectable-fraction", "Resectable share of the liver tumour burden",
          "valueQuantity in %: share of the liver tumour burden a surgeon can remove (eligibility input)."),
        C("ia-prrt-trial", "Enrolled in an intra-arterial PRRT trial", "valueBoolean (eligibility input)."),
    ),
)

_CONDITION = CodeSystemDef(
    "condition-code", "NetliverConditionCode", "Conditions relevant to liver-directed therapy",
    "Conditions read from the problem list; each is also matched by its SNOMED CT code where "
    "one exists.",
    (
        C("ascites", "Ascites"),
        C("portal-vein-thrombosis", "Portal vein thrombosis or obstruction"),
        C("bilioenteric-anastomosis", "Bilio-enteric anastomosis"),
        C("sphincterotomy", "Biliary sphincterotomy"),
        C("biliary-dilatation", "Intrahepatic biliary dilatation"),
        C("irreversible-coagulopathy", "Irreversible coagulopathy"),
        C("contrast-allergy", "Iodinated contrast allergy"),
        C("cardiac-arrhythmia", "Cardiac arrhythmia or pacemaker"),
        C("pre-existing-liver-disease", "Pre-existing liver disease"),
        C("prior-liver-radiation", "Prior liver radiation"),
        C("gi-reflux-on-maa", "Uncorrectable reflux to gastrointestinal organs on MAA work-up"),
        C("anesthesia-contraindicated", "Contraindication to sedation or general anaesthesia"),
    ),
)

_PRIMARY = CodeSystemDef(
    "primary-site", "NetliverPrimarySite", "Primary tumour site",
    "Site of the primary neuroendocrine or thyroid tumour.",
    (
        C("small-intestine", "Small intestine (midgut)"),
        C("pancreas", "Pancreas (foregut)"),
        C("stomach", "Stomach (foregut)"),
        C("appendix", "Appendix (midgut)"),
        C("colorectum", "Colon or rectum (hindgut)"),
        C("lung", "Lung or bronchus (foregut)"),
        C("unknown", "Unknown primary"),
        C("thyroid-medullary", "Medullary thyroid cancer"),
        C("thyroid-differentiated", "Differentiated thyroid cancer"),
    ),
)

_DISEASE_STATE = CodeSystemDef(
    "disease-state", "NetliverDiseaseState", "Disease state",
    "Course of a disease compartment.",
    (
        C("absent", "Absent"),
        C("stable", "Stable"),
        C("progressing", "Progressing"),
    ),
)

_LESION_ROLE = CodeSystemDef(
    "lesion-role", "NetliverLesionRole", "Lesion role",
    "Role of a lesion in a response assessment.",
    (
        C("target", "Target lesion"),
        C("non-target", "Non-target lesion"),
        C("new", "New lesion"),
    ),
)

_NON_TARGET = CodeSystemDef(
    "non-target-status", "NetliverNonTargetStatus", "Non-target lesion status",
    "Status of a non-target lesion at follow-up.",
    (
        C("present", "Present (non-CR/non-PD)"),
        C("absent", "Absent"),
        C("unequivocal-progression", "Unequivocal progression"),
        C("further-increase", "Further increase since the last assessment", "iRECIST: any increase of non-target or new non-target lesions after iUPD."),
    ),
)

_RESPONSE = CodeSystemDef(
    "response", "NetliverResponse", "Tumour response",
    "Components, categories and measures of tumour-response assessments.",
    (
        C("vs-baseline", "Response versus baseline"),
        C("vs-nadir", "Response versus nadir"),
        C("overall", "Overall response of the visit"),
        C("best-overall-response", "Best overall response"),
        C("sum-of-diameters", "Sum of diameters (mm)"),
        C("percent-change-baseline", "Percentage change versus baseline"),
        C("percent-change-nadir", "Percentage change versus nadir"),
        C("sul-peak", "SULpeak of the hottest lesion"),
        C("CR", "Complete response"), C("PR", "Partial response"), C("SD", "Stable disease"),
        C("PD", "Progressive disease"), C("NE", "Not evaluable"),
        C("iCR", "iRECIST complete response"), C("iPR", "iRECIST partial response"),
        C("iSD", "iRECIST stable disease"), C("iUPD", "iRECIST unconfirmed progression"),
        C("iCPD", "iRECIST confirmed progression"),
        C("CMR", "Complete metabolic response"), C("PMR", "Partial metabolic response"),
        C("SMD", "Stable metabolic disease"), C("PMD", "Progressive metabolic disease"),
        # added by the response service ($tumor-response outputs)
        C("recist-1.1", "RECIST 1.1", "Eisenhauer 2009."), C("mrecist", "mRECIST", "Lencioni & Llovet 2010."),
        C("easl", "EASL", "Bruix 2001, viable tumour, bidimensional."), C("choi", "Choi", "Choi 2007."),
        C("percist", "PERCIST 1.0", "Wahl 2009."), C("irecist", "iRECIST", "Seymour 2017."),
        C("tumor-response", "Tumour response at one assessment"),
        C("non-CR/non-PD", "Non-CR/non-PD (non-target disease only)"),
        C("non-iCR/non-iUPD", "Non-iCR/non-iUPD (iRECIST, non-target disease only)"),
        C("target-response", "Response of the target lesions"),
        C("non-target-response", "Response of the non-target lesions"),
        C("new-lesions", "New lesions present"),
        C("nadir", "Nadir of the measure (smallest value, baseline included)"),
        C("nadir-date", "Date of the nadir"),
        C("baseline-measure", "Measure at baseline"),
        C("sum-of-viable-diameters", "Sum of viable (enhancing) diameters (mm), mRECIST"),
        C("sum-of-viable-products", "Sum of products of viable diameters (mm2), EASL"),
        C("mean-attenuation", "Mean attenuation of the target lesions (HU), Choi"),
        C("percent-change-attenuation", "Percentage change of mean attenuation versus baseline"),
        C("treated-lesion", "Lesion treated locally since baseline"),
        C("confirmation-days", "Days required to confirm a response (0 = not required)"),
        C("min-sd-days", "Minimum days after baseline for stable disease"),
        C("biochemical-response", "Biochemical (tumour-marker) response"),
        C("biochemical-stable", "Tumour marker stable"),
        C("biochemical-progression", "Tumour marker progression"),
        C("tumor-marker", "Tumour marker assessed"),
        C("threshold-percent", "Threshold of percentage change"),
        C("ctcae-grade", "CTCAE v5.0 grade of a laboratory adverse event"),
        C("ctcae-term", "CTCAE v5.0 term"),
        C("lab-value", "Laboratory value graded"),
        C("reference-limit", "Reference used for grading (ULN, LLN or pre-treatment value)"),
        C("case-report-form", "Imaging case-report form (003_… Table 1)"),
        C("crf-target-lesion", "Target lesion row of the imaging case-report form"),
        C("crf-criterion", "Response of one criterion on the imaging case-report form"),
        C("lesion-location", "Location of the lesion"),
        C("lesion-size", "Size of the lesion (mm)"),
        C("lesion-attenuation", "Density of the lesion (HU)"),
        C("lesion-suv-max", "SUVmax (or SULpeak) of the lesion"),
        C("not-assessable", "The criterion could not be applied to these data"),
    ),
)

_OPERATION = CodeSystemDef(
    "operation", "NetliverOperation", "netliver operations",
    "The operations of the gateway, as Task.code of the jobs that run them.",
    (
        C("evaluate-eligibility", "$evaluate-eligibility", "Eligibility for liver-directed therapy."),
        C("tumor-response", "$tumor-response", "Tumour response versus baseline and nadir."),
        C("sirt-activity", "$sirt-activity", "Y-90 SIRT activity planning."),
        C("voxel-dosimetry", "$voxel-dosimetry", "Voxel dosimetry of a post-SIRT or MAA study (asynchronous)."),
    ),
)

_TAG = CodeSystemDef(
    "tag", "NetliverTag", "netliver resource tags",
    "Tags (meta.tag) netliver puts on the resources it writes.",
    (C("derived-result", "Result computed by netliver",
       "Written by a netliver service; never read back as an input of a computation."),),
)

_CDS_OVERRIDE = CodeSystemDef(
    "cds-override-reason", "NetliverCdsOverrideReason", "Why a CDS card was set aside",
    "Override reasons offered on the cards of the CDS Hooks service (CDS Hooks 2.0 overrideReasons) "
    "and recorded from the client's feedback.",
    (
        C("tumour-board-decision", "The multidisciplinary tumour board decided otherwise"),
        C("data-outdated", "The record the card used is outdated or incomplete"),
        C("patient-preference", "Patient preference"),
        C("clinical-judgement", "Clinical judgement (see comment)"),
    ),
)

#: All project CodeSystems by id.
CODESYSTEMS: dict[str, CodeSystemDef] = {
    cs.id: cs
    for cs in (_THERAPY, _STATUS, _OBSERVATION, _CONDITION, _PRIMARY, _DISEASE_STATE,
               _LESION_ROLE, _NON_TARGET, _RESPONSE, _OPERATION, _TAG, _CDS_OVERRIDE)
}


def codes_of(system_url: str) -> frozenset[str]:
    """The codes of one project CodeSystem by canonical URL."""
    for cs in CODESYSTEMS.values():
        if cs.url == system_url:
            return cs.codes()
    raise KeyError(system_url)


def codesystem_resource(system_id: str, version: str) -> dict[str, Any]:
    """The CodeSystem as a FHIR resource (complete content)."""
    cs = CODESYSTEMS[system_id]
    concepts = []
    for c in cs.concepts:
        item: dict[str, Any] = {"code": c.code, "display": c.display}
        if c.definition:
            item["definition"] = c.definition
        concepts.append(item)
    return {
        "resourceType": "CodeSystem",
        "id": cs.id,
        "url": cs.url,
        "version": version,
        "name": cs.name,
        "title": cs.title,
        "status": "active",
        "experimental": False,
        "publisher": "netliver",
        "description": cs.description,
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": concepts,
    }
