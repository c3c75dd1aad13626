"""Errors of the dosimetry domain (pure; the HTTP boundary maps them to 422 OperationOutcomes)."""

from __future__ import annotations

__all__ = ["DosimetryInputError"]


class DosimetryInputError(ValueError):
    """An input that the dosimetry maths cannot use.

    ``parameter`` names the offending input with the public parameter name of the contract
    (``lungShuntFraction``, ``tumorVolumeMl``, ...) or the engine argument name
    (``voxel_size_mm``, ``density_g_per_ml``, ...), so the boundary can name it in
    ``OperationOutcome.issue.expression``.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message
