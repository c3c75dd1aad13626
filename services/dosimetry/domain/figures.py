"""Numbers in safety messages, shown with enough digits to see why they crossed a limit.

A lung shunt of 20.01 % printed with one decimal reads "20.0 % is above 20 %", which looks like
an error in the rule. :func:`beyond` keeps adding decimals (from ``decimals``) until the printed
value and the printed limit differ on the side the comparison found.
"""

from __future__ import annotations

import math

__all__ = ["beyond"]

_MAX_DECIMALS = 6


def beyond(value: float, limit: float, decimals: int = 1) -> str:
    """``value`` formatted with at least ``decimals`` decimals, and as many more (up to six) as
    it takes for it not to print equal to ``limit`` (printed with the same decimals)."""
    if not (math.isfinite(value) and math.isfinite(limit)):
        return f"{value:.{decimals}f}"
    for d in range(decimals, _MAX_DECIMALS + 1):
        shown, bound = round(value, d), round(limit, d)
        if (value > limit and shown > bound) or (value < limit and shown < bound) or value == limit:
            return f"{value:.{d}f}"
    return f"{value:.{_MAX_DECIMALS}f}"
