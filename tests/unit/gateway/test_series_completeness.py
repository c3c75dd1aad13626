"""A PET series announces its size; fewer instances than that is a series still arriving
(PS3.3 C.8.9.1: NumberOfSlices (0054,0081), NumberOfTimeSlices (0054,0101) for DYNAMIC)."""

from __future__ import annotations

import pytest
from pydicom.multival import MultiValue

from netliver.dosimetry_contract import missing_instances


@pytest.mark.parametrize(("instances", "complete"), [(63, False), (64, True), (65, True), (1, False)])
def test_a_static_pet_series_needs_number_of_slices_instances(instances: int, complete: bool) -> None:
    why = missing_instances("PT", instances, {"NumberOfSlices": "64", "SeriesType": "STATIC\\IMAGE"})
    assert (why is None) is complete
    if why:
        assert f"holds {instances} of the 64 instances" in why and "NumberOfSlices (0054,0081)" in why


def test_a_dynamic_series_needs_every_time_slice() -> None:
    header = {"NumberOfSlices": 10, "NumberOfTimeSlices": 3, "SeriesType": MultiValue(str, ["DYNAMIC", "IMAGE"])}
    assert "of the 30 instances" in str(missing_instances("PT", 29, header))
    assert missing_instances("PT", 30, header) is None
    # NumberOfTimeSlices counts only for a dynamic series
    assert missing_instances("PT", 10, {**header, "SeriesType": "STATIC\\IMAGE"}) is None


@pytest.mark.parametrize(("modality", "header"), [
    ("NM", {"NumberOfSlices": "64", "NumberOfFrames": "64"}),   # one multi-frame reconstruction
    ("PT", {"NumberOfSlices": "64", "NumberOfFrames": "64"}),   # enhanced (multi-frame) PET
    ("PT", {}),                                                 # no size stated: nothing to say
    ("PT", {"NumberOfSlices": "sixty"}),                        # unreadable size: nothing to say
    ("CT", {"NumberOfSlices": "64"}),
])
def test_series_that_state_no_per_instance_size_are_not_judged(modality: str, header: dict[str, str]) -> None:
    assert missing_instances(modality, 1, header) is None
