"""Values read from FHIR resources for the page: codes, quantities with their units, dates, references."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CRITERIA", "Quantity"]

#: Response criteria codes → their names.
CRITERIA = {"recist-1.1": "RECIST 1.1", "mrecist": "mRECIST", "choi": "Choi", "percist": "PERCIST",
            "irecist": "iRECIST", "easl": "EASL"}


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str

    def text(self, digits: int = 1) -> str:
        number = f"{self.value:.{digits}f}" if isinstance(self.value, float) else str(self.value)
        return f"{number} {self.unit}".strip()


def _codes(concept: Any, system: str | None = None) -> list[str]:
    if not isinstance(concept, Mapping):
        return []
    return [c.get("code", "") for c in concept.get("coding") or []
            if isinstance(c, Mapping) and (system is None or c.get("system") == system)]


def _code(concept: Any, system: str | None = None) -> str:
    found = _codes(concept, system)
    return found[0] if found else ""


def _quantity(raw: Any) -> Quantity | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("value"), int | float):
        return None
    return Quantity(float(raw["value"]), str(raw.get("unit") or raw.get("code") or ""))


def _components(resource: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """component by its first code (or its text when it has none)."""
    out: dict[str, Mapping[str, Any]] = {}
    for comp in resource.get("component") or []:
        key = _code(comp.get("code")) or str((comp.get("code") or {}).get("text", ""))
        out.setdefault(key, comp)
    return out


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _date(resource: Mapping[str, Any]) -> str:
    when = resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get("start") or ""
    return str(when)[:10]
