"""The project's extensions and their StructureDefinitions (FHIR R4 §2.17 "Extensibility").

Every extension URL the services and the gateway write or read lives under
``https://netliver.org/fhir/StructureDefinition/`` and is served by the gateway at
``GET /fhir/StructureDefinition/{id}`` as an extension definition (``type`` Extension,
``derivation`` constraint, a differential fixing ``url`` and ``value[x]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netliver.fhir.codesystems import CANONICAL_BASE
from netliver.fhir.models import FHIR_VERSION

__all__ = ["EXTENSIONS", "ExtensionDef", "extension_url", "structure_definition"]


@dataclass(frozen=True)
class ExtensionDef:
    id: str
    title: str
    description: str
    contexts: tuple[str, ...]
    #: the FHIR type of ``value[x]``; "" for a complex extension (sub-extensions only)
    value_type: str

    @property
    def url(self) -> str:
        return extension_url(self.id)


def extension_url(extension_id: str) -> str:
    return f"{CANONICAL_BASE}/StructureDefinition/{extension_id}"


EXTENSIONS: dict[str, ExtensionDef] = {ext.id: ext for ext in (
    ExtensionDef("task-progress", "Job progress", "Share of the job done, 0 to 1.", ("Task",), "decimal"),
    ExtensionDef("task-attempts", "Job attempts", "How many times a worker has started the job.", ("Task",),
                 "integer"),
    ExtensionDef("task-stage-seconds", "Seconds per job stage",
                 "One sub-extension per stage of the job: its url is the stage name, its valueDecimal the "
                 "seconds spent in it.", ("Task",), ""),
    ExtensionDef("lesion-fragment-of", "Lesion fragment of",
                 "The lesion this one split off from (the earlier lesion's BodyStructure or Observation).",
                 ("Observation",), "Reference"),
    ExtensionDef("lesion-merged-into", "Lesion merged into",
                 "The lesion this one has merged into (the later lesion's BodyStructure or Observation).",
                 ("Observation",), "Reference"),
    ExtensionDef("previous-treatment", "Previous treatment",
                 "A treatment given before this assessment (code from the therapy CodeSystem).",
                 ("DiagnosticReport",), "CodeableConcept"),
    ExtensionDef("imaging-procedure", "Imaging procedure",
                 "An imaging modality used for the assessment (SNOMED CT).", ("DiagnosticReport",),
                 "CodeableConcept"),
    ExtensionDef("voxel-bed-map", "Voxel BED map in the PACS",
                 "The SOP Instance UID (urn:dicom:uid, urn:oid:…) of the RT Dose, DoseType EFFECTIVE, holding "
                 "the voxel BED map of this voxel-dosimetry report in the study's PACS (DOSIMETRY_STORE_BED_MAP).",
                 ("DiagnosticReport",), "Identifier"),
)}


def _pascal(text: str) -> str:
    return "".join(part.capitalize() for part in text.split("-"))


def structure_definition(extension_id: str, version: str) -> dict[str, Any]:
    """The extension definition as a StructureDefinition resource."""
    ext = EXTENSIONS[extension_id]
    elements: list[dict[str, Any]] = [
        {"id": "Extension", "path": "Extension", "short": ext.title, "definition": ext.description},
    ]
    if ext.value_type:
        elements += [
            {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
            {"id": "Extension.url", "path": "Extension.url", "fixedUri": ext.url},
            {"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1,
             "type": [{"code": ext.value_type}]},
        ]
    else:
        elements += [
            {"id": "Extension.extension", "path": "Extension.extension", "min": 1},
            {"id": "Extension.url", "path": "Extension.url", "fixedUri": ext.url},
            {"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"},
        ]
    return {
        "resourceType": "StructureDefinition",
        "id": ext.id,
        "url": ext.url,
        "version": version,
        "name": _pascal(ext.id),
        "title": ext.title,
        "status": "active",
        "publisher": "netliver",
        "description": ext.description,
        "fhirVersion": FHIR_VERSION,
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": context} for context in ext.contexts],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {"element": elements},
    }
