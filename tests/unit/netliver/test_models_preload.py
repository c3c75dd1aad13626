"""``preload`` loads, at process start, the model classes of the elements the common resources
hold, not only the resources' own: a process's first job results are validated without importing
anything (fhir.resources resolves an element's class on first use, 51 ms for a first dosimetry
DiagnosticReport against 0.9 ms for the next)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

#: Results as a dosimetry job writes them, with the element types that take longest to load:
#: an Attachment (presentedForm), components with Quantities, a reference range, Provenance agents.
RESULTS = [
    {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Y-90 dosimetry"},
     "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-12-03T10:00:00Z",
     "presentedForm": [{"contentType": "application/pdf", "url": "Binary/report-1", "title": "report"}],
     "result": [{"reference": "Observation/o1"}]},
    {"resourceType": "Observation", "status": "final", "code": {"text": "Absorbed dose in liver"},
     "subject": {"reference": "Patient/p1"}, "bodySite": {"text": "liver"},
     "valueQuantity": {"value": 41.2, "unit": "Gy", "system": "http://unitsofmeasure.org", "code": "Gy"},
     "referenceRange": [{"high": {"value": 70, "unit": "Gy"}, "text": "normal liver"}],
     "component": [{"code": {"text": "D70"}, "valueQuantity": {"value": 30.1, "unit": "Gy"}},
                   {"code": {"text": "volume"}, "valueQuantity": {"value": 1520.0, "unit": "mL"}}],
     "note": [{"text": "kernel convolution"}]},
    {"resourceType": "Provenance", "target": [{"reference": "Observation/o1"}],
     "recorded": "2026-12-03T10:00:00Z",
     "agent": [{"type": {"coding": [{"code": "assembler"}]}, "who": {"display": "netliver dosimetry"}}],
     "entity": [{"role": "source", "what": {"identifier": {"value": "1.2.3"}}}]},
]

_PROBE = """
import json, sys
from netliver.fhir import models
from netliver.fhir.validation import check_resource
if sys.argv[1] == "old":  # the resource classes alone, as preload loaded them before
    for name in models.COMMON_TYPES:
        models.model_class(name)
else:
    models.preload()
before = {m for m in sys.modules if m.startswith("fhir.resources")}
for resource in json.loads(sys.argv[2]):
    check_resource(resource)
print(json.dumps(sorted({m for m in sys.modules if m.startswith("fhir.resources")} - before)))
"""


def _modules_loaded_by_validation(mode: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode, json.dumps(RESULTS)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_after_preload_the_first_results_import_no_model() -> None:
    assert _modules_loaded_by_validation("preload") == []


def test_the_resource_classes_alone_leave_element_models_to_the_first_validation() -> None:
    # the other direction: what preload now loads up front would otherwise be imported here
    loaded = _modules_loaded_by_validation("old")
    assert "fhir.resources.R4B.attachment" in loaded and "fhir.resources.R4B.quantity" in loaded
