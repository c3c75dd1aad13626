"""Three-valued (Kleene) truth for rules whose inputs may be missing (Kleene's strong three-valued logic).

A rule is *met*, *not met* or *unknown* (an input missing, stale, conflicting or out of the
rule set's reach). ``all_of``/``any_of`` follow Kleene's strong logic, so a rule with a
missing input can still be decided when the known inputs settle it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

__all__ = ["Tri", "all_of", "any_of", "negate"]


class Tri(Enum):
    """Truth value of one rule or sub-test."""

    MET = "met"
    NOT_MET = "not-met"
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, value: bool) -> Tri:
        return cls.MET if value else cls.NOT_MET


def negate(value: Tri) -> Tri:
    if value is Tri.MET:
        return Tri.NOT_MET
    if value is Tri.NOT_MET:
        return Tri.MET
    return Tri.UNKNOWN


def all_of(values: Iterable[Tri]) -> Tri:
    """Kleene AND: not met if any is not met; met only if all are met."""
    seen_unknown = False
    for value in values:
        if value is Tri.NOT_MET:
            return Tri.NOT_MET
        if value is Tri.UNKNOWN:
            seen_unknown = True
    return Tri.UNKNOWN if seen_unknown else Tri.MET


def any_of(values: Iterable[Tri]) -> Tri:
    """Kleene OR: met if any is met; not met only if all are not met."""
    seen_unknown = False
    for value in values:
        if value is Tri.MET:
            return Tri.MET
        if value is Tri.UNKNOWN:
            seen_unknown = True
    return Tri.UNKNOWN if seen_unknown else Tri.NOT_MET
