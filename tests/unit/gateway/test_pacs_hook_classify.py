"""Which PACS studies start a dosimetry job (PS3.3 C.8.4.10 NM in MBq, C.8.9.2 PET in Bq)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.pacs_hook import classify_study
from netliver.dosimetry_contract import TC99M, Y90

Y90_HALF_LIFE_S, TC99M_HALF_LIFE_S = Y90.half_life_s, TC99M.half_life_s


def _series(modality: str, half_life_s: float | None = None, text: str = "", dose: str | None = None) -> dict[str, Any]:
    rp: dict[str, Any] | None = None
    if half_life_s is not None or text:
        rp = {"Radiopharmaceutical": text}
        if half_life_s is not None:
            rp["RadionuclideHalfLife"] = str(half_life_s)
        if dose is not None:
            rp["RadionuclideTotalDose"] = dose
    return {"modality": modality, "radiopharmaceutical": rp}


def test_y90_pet_with_activity_in_bq() -> None:
    kind, gbq, _ = classify_study([_series("PT", Y90_HALF_LIFE_S, "Y-90 microspheres", "2.1e9"), _series("CT")])
    assert kind == "y90-pet" and gbq == pytest.approx(2.1)


def test_y90_bremsstrahlung_spect_with_activity_in_mbq() -> None:
    kind, gbq, _ = classify_study([_series("NM", Y90_HALF_LIFE_S, "", "1800"), _series("CT")])
    assert kind == "y90-spect" and gbq == pytest.approx(1.8)


def test_tc99m_maa_spect_needs_the_planned_activity() -> None:
    kind, gbq, _ = classify_study([_series("NM", TC99M_HALF_LIFE_S, "Tc99m MAA", "150"), _series("CT")])
    assert kind == "maa-spect" and gbq is None


@pytest.mark.parametrize("series", [
    [_series("CT")],
    [_series("NM", TC99M_HALF_LIFE_S, "Tc99m HDP bone scan"), _series("CT")],  # Tc-99m but not MAA
    [_series("PT", 6586.2, "FDG"), _series("CT")],  # F-18
    [_series("MR")],
])
def test_other_studies_start_no_job(series: list[dict[str, Any]]) -> None:
    kind, gbq, reason = classify_study(series)
    assert kind == "none" and gbq is None and "not a dosimetry study" in reason


def test_nuclide_by_name_when_the_half_life_is_missing() -> None:
    kind, _, _ = classify_study([_series("PT", None, "90Y glass microspheres", "3e9")])
    assert kind == "y90-pet"


def test_half_life_within_one_percent_only() -> None:
    # The worker's tolerance as well (netliver.dosimetry_contract.HALF_LIFE_TOLERANCE).
    assert classify_study([_series("PT", Y90_HALF_LIFE_S * 1.0099)])[0] == "y90-pet"
    assert classify_study([_series("PT", Y90_HALF_LIFE_S * 0.9901)])[0] == "y90-pet"
    assert classify_study([_series("PT", Y90_HALF_LIFE_S * 1.0101)])[0] == "none"
    assert classify_study([_series("PT", Y90_HALF_LIFE_S * 1.019)])[0] == "none"


def test_a_stated_half_life_of_no_known_nuclide_outranks_the_names() -> None:
    assert classify_study([_series("PT", Y90_HALF_LIFE_S * 1.03, "Y-90 microspheres", "2e9")])[0] == "none"


def test_two_gateways_starting_the_catch_up_cursor_at_once_do_not_fail() -> None:
    import sqlalchemy as sa

    from gateway.pacs_hook import CatchUpCursor

    metadata = sa.MetaData()
    cursor = CatchUpCursor(sa.create_engine("sqlite://"), metadata)
    metadata.create_all(cursor.engine)
    assert cursor.advance(0, 5) is True and cursor.get() == 5
    # The other process checked for the row before this one committed it (PostgreSQL, READ
    # COMMITTED): its insert then collides; it lost the race, it must not crash the catch-up.
    cursor._missing = lambda conn: True  # type: ignore[method-assign]
    assert cursor.advance(0, 7) is False and cursor.get() == 5
