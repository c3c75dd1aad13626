"""Safety messages print a value with enough digits to show why it crossed its limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dosimetry.domain.figures import beyond
from services.dosimetry.domain.planning import PlanInputs, plan_sirt


@pytest.mark.parametrize(("value", "limit", "shown"), [
    (20.01, 20.0, "20.01"),     # one decimal would read "20.0 % is above 20 %"
    (20.0001, 20.0, "20.0001"),
    (25.0, 20.0, "25.0"),       # clearly above: the usual one decimal
    (29.96, 30.0, "29.96"),     # below a minimum: 30.0 would look like it met it
    (30.0, 30.0, "30.0"),       # equal: nothing to separate
    (120.04, 120.0, "120.04"),
])
def test_enough_digits(value: float, limit: float, shown: str) -> None:
    assert beyond(value, limit) == shown


@given(st.floats(0.001, 1e4), st.floats(0.001, 1e4))
def test_the_printed_value_is_on_the_same_side_of_the_printed_limit(value: float, limit: float) -> None:
    text = beyond(value, limit)
    decimals = len(text.split(".")[1])
    printed_limit = round(limit, decimals)
    if value - limit > 1e-6:
        assert float(text) > printed_limit
    elif limit - value > 1e-6:
        assert float(text) < printed_limit


def test_a_lung_shunt_just_over_20_percent_says_so_in_the_message() -> None:
    plan = plan_sirt(PlanInputs(method="bsa", device="resin", bsa_m2=1.8, tumor_involvement=0.2,
                                lung_shunt_fraction=0.2001))
    text = next(w.text for w in plan.warnings if w.rule_id == "lung-shunt-above-20")
    assert "lung shunt 20.01 % is above 20 %" in text
    assert plan.status == "contraindicated"


def test_a_lung_dose_just_over_the_limit_says_so_in_the_message() -> None:
    # MIRD: lung dose = target·M·LSF/((1 − LSF)·M_lung), M = 1500 mL · 1.03 g/mL = 1.545 kg; the
    # target is chosen so that the lung gets 30.02 Gy, which one decimal would print as 30.0
    target = 30.02 * 0.81 / (1.545 * 0.19)
    plan = plan_sirt(PlanInputs(method="mird", device="glass", target_dose_gy=target, liver_volume_ml=1500,
                                lung_shunt_fraction=0.19, lung_limit_gy=30.0))
    assert plan.lung_dose_gy == pytest.approx(30.02, abs=1e-9)
    text = next(w.text for w in plan.warnings if w.rule_id == "lung-dose-per-treatment")
    assert "predicted lung dose 30.02 Gy exceeds the limit 30 Gy" in text
