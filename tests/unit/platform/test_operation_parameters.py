"""Each OperationDefinition the gateway publishes names exactly the parameters its service reads.

The parameters of ``/fhir/OperationDefinition/{code}`` (gateway/metadata.py) are compared with
what the parser of the service accepts: the ``$sirt-activity`` Parameters reader, the
``$tumor-response`` and ``$evaluate-eligibility`` query parameters, and the job parameters the
voxel worker reads. A parameter published but ignored, or read but not published, fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from gateway.metadata import OPERATIONS, operation_definition
from netliver.dosimetry_contract import VOXEL_PARAMETERS
from netliver.fhir.outcome import FhirError
from services.dosimetry.fhir_in import ACCEPTED_PARAMETERS, parse_sirt_request, voxel_job_request
from services.eligibility.fhir_in import evaluation_date
from services.response.fhir_in import parse_settings

pytestmark = pytest.mark.unit

#: Published parameters carried by the request body rather than read by name.
BODY = {"input", "return"}
#: Job parameters the gateway adds itself (the PACS hook's ImagingStudy), not a caller's input.
JOB_EXTRAS = {"imagingStudy"}


class Recording(dict[str, Any]):
    """A mapping that remembers every key asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def _inputs(code: str) -> dict[str, dict[str, Any]]:
    published = operation_definition(code)["parameter"]
    return {p["name"]: p for p in published if p["use"] == "in" and p["name"] not in BODY}


def _asked(reader: Callable[[Mapping[str, Any]], Any], args: dict[str, Any]) -> set[str]:
    recording = Recording(args)
    reader(recording)
    return recording.asked


def test_every_operation_is_checked_here() -> None:
    assert set(OPERATIONS) == {"evaluate-eligibility", "tumor-response", "sirt-activity", "voxel-dosimetry",
                               "dose-comparison"}


def test_dose_comparison_reads_exactly_the_published_parameters() -> None:
    from services.dosimetry.fhir_in import COMPARISON_INPUTS

    assert set(COMPARISON_INPUTS) == set(_inputs("dose-comparison"))


def test_tumor_response_reads_exactly_the_published_query_parameters() -> None:
    assert _asked(parse_settings, {}) == set(_inputs("tumor-response"))


def test_evaluate_eligibility_reads_exactly_the_published_query_parameters() -> None:
    assert _asked(evaluation_date, {}) == set(_inputs("evaluate-eligibility"))


def test_voxel_dosimetry_parser_accepts_exactly_the_published_parameters() -> None:
    assert set(VOXEL_PARAMETERS) == set(_inputs("voxel-dosimetry"))
    required = {p["name"] for p in _inputs("voxel-dosimetry").values() if p["min"] == 1}
    assert {name for name, (_, needed) in VOXEL_PARAMETERS.items() if needed} == required


def test_voxel_worker_reads_the_published_job_parameters() -> None:
    params = {"studyInstanceUid": "1.2.3", "administeredActivityGBq": 1.5}
    assert _asked(voxel_job_request, params) - JOB_EXTRAS == set(_inputs("voxel-dosimetry"))


def test_sirt_activity_accepts_exactly_the_published_parameters() -> None:
    assert set(ACCEPTED_PARAMETERS) == set(_inputs("sirt-activity"))


_VALUES = {"decimal": ("valueDecimal", 1.5), "code": ("valueCode", "partition"),
           "dateTime": ("valueDateTime", "2026-01-01T10:00:00+00:00"), "boolean": ("valueBoolean", True),
           "Reference": ("valueReference", {"reference": "Patient/p1"})}


@pytest.mark.parametrize("name", sorted(_inputs("sirt-activity")))
def test_sirt_activity_parser_takes_each_published_parameter_with_its_published_type(name: str) -> None:
    published = _inputs("sirt-activity")[name]
    if name == "lesion":
        param: dict[str, Any] = {"name": name, "part": [{"name": "volumeMl", "valueDecimal": 10},
                                                         {"name": "tumorToNormalRatio", "valueDecimal": 3}]}
    else:
        key, value = _VALUES[published["type"]]
        assert key.removeprefix("value") in ACCEPTED_PARAMETERS[name]
        param = {"name": name, key: value}
    others = [] if name == "method" else [{"name": "method", "valueCode": "partition"}]
    request = parse_sirt_request({"resourceType": "Parameters", "parameter": [param, *others]})
    assert name in request.locations or (name == "lesion" and request.inputs.extra_lesions)


def test_sirt_activity_refuses_a_parameter_it_does_not_publish() -> None:
    with pytest.raises(FhirError) as err:
        parse_sirt_request({"resourceType": "Parameters", "parameter": [
            {"name": "method", "valueCode": "bsa"}, {"name": "lungShuntPercent", "valueDecimal": 5}]})
    assert err.value.status == 422 and "lungShuntPercent" in str(err.value.expression)
