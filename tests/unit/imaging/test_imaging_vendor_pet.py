"""Vendor conventions of PET images that differ from the standard: a GE series whose SeriesTime
was re-stamped by post-processing (the decay reference is then GE's private scan start), and
PET Units the pipeline cannot turn into Bq/mL (SUV, counts, proportional counts), each refused
by name."""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime, timedelta

import pytest
from pydicom.dataset import Dataset

from services.dosimetry.imaging.errors import NoActivitySeriesError
from services.dosimetry.imaging.phantoms import PhantomStudy, build_study, two_compartment_liver
from services.dosimetry.imaging.volume import activity_volume

Y90_HALF_LIFE_S = 64.1 * 3600.0


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return build_study(two_compartment_liver(n=12, voxel_mm=17.68), "PT", seed=141, with_seg=False,
                       hours_after_administration=3.0)


def _dt(ds: Dataset, date: str, time: str) -> datetime:
    return datetime.strptime(f"{ds.get(date)}{ds.get(time)}", "%Y%m%d%H%M%S.%f")


def _restamped(study: PhantomStudy, *, ge: bool, acquisition_delay_min: float) -> list[Dataset]:
    """The series after post-processing re-stamped SeriesTime one hour late; AcquisitionTime of
    every slice ``acquisition_delay_min`` after the true start; GE's private scan start
    (GEMS_PETD_01, (0009,xx0D)) at the true start when ``ge``."""
    out = []
    for ds in deepcopy(study.activity):
        start = _dt(ds, "SeriesDate", "SeriesTime")
        ds.SeriesTime = (start + timedelta(hours=1)).strftime("%H%M%S.%f")
        ds.AcquisitionTime = (start + timedelta(minutes=acquisition_delay_min)).strftime("%H%M%S.%f")
        if ge:
            ds.Manufacturer = "GE MEDICAL SYSTEMS"
            block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
            block.add_new(0x0D, "DT", start.strftime("%Y%m%d%H%M%S.%f"))
        out.append(ds)
    return out


def test_a_ge_series_restamped_by_post_processing_decays_from_ges_scan_start(study: PhantomStudy) -> None:
    reference = activity_volume(study.activity)
    ge = activity_volume(_restamped(study, ge=True, acquisition_delay_min=5.0))
    assert ge.decay_factor == pytest.approx(reference.decay_factor, rel=1e-12)
    assert any("(0009,xx0D)" in w for w in ge.warnings)


def test_without_ges_scan_start_the_earliest_acquisition_is_the_series_start(study: PhantomStudy) -> None:
    reference = activity_volume(study.activity)
    other = activity_volume(_restamped(study, ge=False, acquisition_delay_min=5.0))
    # QIBA's vendor-neutral rule: the scan started at the earliest AcquisitionTime, here 5 min late
    assert other.decay_factor == pytest.approx(reference.decay_factor * 2 ** (300.0 / Y90_HALF_LIFE_S), rel=1e-9)
    assert any("SeriesTime" in w and "earliest AcquisitionTime" in w for w in other.warnings)


def test_a_series_time_before_the_acquisition_is_used_as_it_is(study: PhantomStudy) -> None:
    slices = deepcopy(study.activity)
    for ds in slices:
        later = _dt(ds, "AcquisitionDate", "AcquisitionTime") + timedelta(minutes=5)
        ds.AcquisitionTime = later.strftime("%H%M%S.%f")
    vol = activity_volume(slices)
    assert vol.decay_factor == pytest.approx(activity_volume(study.activity).decay_factor, rel=1e-12)
    assert not any("SeriesTime" in w for w in vol.warnings)


@pytest.mark.parametrize("units, named", [("GML", "SUV"), ("CM2ML", "SUV"), ("PROPCPS", "not calibrated"),
                                          ("CPS", "not calibrated"), ("CNTS", "not calibrated"),
                                          ("NONE", "no unit")])
def test_pet_units_the_pipeline_cannot_calibrate_are_refused_by_name(study: PhantomStudy, units: str,
                                                                   named: str) -> None:
    slices = deepcopy(study.activity)
    for ds in slices:
        ds.Units = units
    with pytest.raises(NoActivitySeriesError, match=named) as err:
        activity_volume(slices)
    assert err.value.expression == "Units" and units in err.value.message
