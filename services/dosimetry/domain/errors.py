"""Errors of the dosimetry domain (pure; the HTTP boundary maps them to 422 OperationOutcomes)."""

from __future__ import annotations

__all__ = ["DosimetryInputError"]


class DosimetryInputError(ValueError):
    """An input that the dosimetry maths cannot use.

    ``field`` names the offending input in the domain's own words: a field of ``PlanInputs``
    (``lung_shunt_fraction``, ``tumor_volume_ml``, ...) or the engine's argument
    (``voxel_size_mm``, ``density_g_per_ml``, ...). The FHIR boundary
    (:func:`services.dosimetry.fhir_in.input_error`) names the contract's parameter instead.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
