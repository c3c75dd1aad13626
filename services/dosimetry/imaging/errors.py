"""Typed errors of the imaging layer, each with the HTTP status of the public contract.

422: the study is valid DICOM but unusable (no NM/PT series, missing geometry tag, a CT or a
segmentation that does not match the activity volume, pixel data that cannot be decoded);
404: no such study or series; 503: the PACS cannot be reached (with ``Retry-After``); 502: the
PACS refuses netliver's credentials (401/403, a configuration error, not retried). :meth:`ImagingError.to_fhir_error`
gives the :class:`~netliver.fhir.outcome.FhirError` a view or a job's ``statusReason`` uses.
"""

from __future__ import annotations

from netliver.fhir.outcome import FhirError

__all__ = [
    "CtMismatchError",
    "GeometryError",
    "ImagingError",
    "JobCancelledError",
    "NoActivitySeriesError",
    "PacsConfigurationError",
    "PacsUnavailableError",
    "PixelDataError",
    "SegmentationError",
    "SeriesNotFoundError",
]


class ImagingError(Exception):
    """An imaging input that cannot be used; ``status`` is the HTTP status it maps to.

    ``expression`` names the offending input (a job parameter or a DICOM attribute keyword).
    """

    status = 422
    code = "processing"

    def __init__(self, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression

    @property
    def reason(self) -> str:
        """The text a failed Task's ``statusReason`` carries."""
        return self.message

    def to_fhir_error(self) -> FhirError:
        headers = {"Retry-After": "30"} if self.status == 503 else {}
        return FhirError(self.status, self.code, self.message, self.expression, headers=headers)


class PacsUnavailableError(ImagingError):
    """The DICOMweb service did not answer (connection refused, timeout, 5xx)."""

    status = 503
    code = "transient"


class PacsConfigurationError(ImagingError):
    """The PACS refused netliver's credentials (HTTP 401/403): a configuration error that
    retrying will not cure, so it is not reported as the PACS being down."""

    status = 502
    code = "security"


class PixelDataError(ImagingError):
    """Pixel Data that cannot be decoded: a transfer syntax without a decoder, or data shorter
    or longer than Rows × Columns × frames say (a truncated file)."""


class SeriesNotFoundError(ImagingError):
    """The study or a requested series does not exist in the PACS."""

    status = 422
    code = "not-found"


class NoActivitySeriesError(ImagingError):
    """The study holds no NM (SPECT) or PT (PET) series usable for dosimetry."""


class GeometryError(ImagingError):
    """A geometry attribute is missing or inconsistent (the message names the DICOM tag)."""


class CtMismatchError(ImagingError):
    """The CT does not match the activity volume (other Frame of Reference, no overlap)."""


class SegmentationError(ImagingError):
    """The DICOM SEG / RTSTRUCT is unusable (wrong type, no overlap with the volume, empty)."""


class JobCancelledError(Exception):
    """The caller asked to stop; raised between stages, before anything is stored."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"cancelled before stage {stage!r}")
        self.stage = stage
