"""Mass density of the CT numbers the phantoms use, from the published HU-density fit (Schneider
et al. 1996, four-segment form), repeated here so the tests' expected doses do not read the
implementation's table."""

from __future__ import annotations

__all__ = ["rho_g_per_ml"]


def rho_g_per_ml(hu: float) -> float:
    """Density (g/mL) at ``hu``; x = HU + 1000 in the fit's kg/m³ form."""
    x = hu + 1000.0
    if x < 930:
        # below −70 HU the table runs linearly from air (−1000 HU, 0.0012 g/mL) to the fit at −70 HU
        at_70 = (1.025793065681423 * 930 - 5.680404011488714) / 1000.0
        return 0.0012 + (at_70 - 0.0012) * x / 930.0
    if x <= 1098:
        return (0.9082709691264 * x + 103.6151457847139) / 1000.0
    raise AssertionError("the phantoms use HU ≤ 98")
