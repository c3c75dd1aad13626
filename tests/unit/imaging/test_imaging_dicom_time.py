"""TimezoneOffsetFromUTC (0008,0201) and DT offsets in decay correction (PS3.3 C.12.1.1.8)."""

from __future__ import annotations

from copy import deepcopy
from datetime import UTC, datetime, timedelta

import pytest

from services.dosimetry.imaging.dicom_time import parse_dicom_datetime, parse_utc_offset
from services.dosimetry.imaging.phantoms import PhantomStudy, build_study, two_compartment_liver
from services.dosimetry.imaging.volume import activity_volume

Y90_HALF_LIFE_H = 64.1  # evaluated nuclear data (DDEP/NNDC), the service default; EANM 2022 uses 64.2 h


@pytest.fixture(scope="module")
def pt_study() -> PhantomStudy:
    # administration 09:30 local, series start 12:30 local (3 h later)
    return build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=81, with_seg=False,
                       hours_after_administration=3.0)


def _with(study: PhantomStudy, offset: str | None, start_datetime: str) -> list:  # type: ignore[type-arg]
    out = []
    for ds in study.activity:
        copy = deepcopy(ds)
        if offset is not None:
            copy.TimezoneOffsetFromUTC = offset
        copy.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = start_datetime
        out.append(copy)
    return out


def test_an_injection_time_written_in_utc_is_compared_in_the_scanner_zone(pt_study: PhantomStudy) -> None:
    """The scanner runs at UTC+01:00 (TimezoneOffsetFromUTC +0100); the injection system wrote
    08:30 UTC (= 09:30 local) with its own offset: 3 h of decay, not 4 h."""
    local = activity_volume(_with(pt_study, None, "20240305093000"))
    zoned = activity_volume(_with(pt_study, "+0100", "20240305083000+0000"))
    assert local.decay_factor == pytest.approx(2 ** (3.0 / Y90_HALF_LIFE_H), rel=1e-9)
    assert zoned.decay_factor == pytest.approx(local.decay_factor, rel=1e-9)
    assert zoned.reference_time == datetime(2024, 3, 5, 8, 30, tzinfo=UTC)


def test_without_a_zone_every_time_is_the_scanner_clock(pt_study: PhantomStudy) -> None:
    """No TimezoneOffsetFromUTC: the DT's own offset cannot be set against zone-less times and is
    not applied (all values on the scanner's clock, as before)."""
    vol = activity_volume(_with(pt_study, None, "20240305093000+0500"))
    assert vol.decay_factor == pytest.approx(2 ** (3.0 / Y90_HALF_LIFE_H), rel=1e-9)
    assert vol.reference_time == datetime(2024, 3, 5, 9, 30)


@pytest.mark.parametrize(("text", "expected"), [
    ("+0100", timedelta(hours=1)), ("-0530", -timedelta(hours=5, minutes=30)), ("+0000", timedelta(0)),
    ("0100", None), ("+1500", None), ("+0160", None), ("", None), (None, None)])
def test_utc_offsets(text: str | None, expected: timedelta | None) -> None:
    assert parse_utc_offset(text) == expected


def test_a_dt_offset_wins_over_the_instance_zone() -> None:
    zone = timedelta(hours=2)
    assert parse_dicom_datetime("20240305", "093000", utc_offset=zone) == datetime(2024, 3, 5, 7, 30, tzinfo=UTC)
    assert parse_dicom_datetime("20240305093000-0400", utc_offset=zone) == datetime(2024, 3, 5, 13, 30, tzinfo=UTC)
    assert parse_dicom_datetime("20240305093000-0400") == datetime(2024, 3, 5, 9, 30)
    assert parse_dicom_datetime("2024030509", require_time=True) is None
