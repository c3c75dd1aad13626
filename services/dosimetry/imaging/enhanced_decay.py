"""Decay correction of an enhanced multi-frame PET whose frames are not decay corrected.

An Enhanced PET (PS3.3 A.56; DecayCorrected (0018,9758) NO) or a Legacy Converted Enhanced PET
(A.72; DecayCorrection (0054,1102) NONE among its converted attributes) holds each frame's values
at the time that frame was acquired. A whole-body scan takes its bed positions one after the
other, so the frames of one volume are at different times: each is corrected from its own
time, as the classic per-slice series is (:mod:`.volume`):
A(t_ref) = A(t)·2^((t − t_ref)/T½), averaged over the frame's duration (λΔt/(1 − e^(−λΔt))).

Each frame's time and duration: Frame Content Sequence (0020,9111) → Frame Acquisition DateTime
(0018,9074) and Frame Acquisition Duration (0018,9220, ms); else the frame's converted
AcquisitionDate/AcquisitionTime and ActualFrameDuration (Unassigned Per-Frame Converted
Attributes Sequence (0020,9171)). Each frame is put on its slice by its Plane Position
(0020,9113). A frame without a time cannot be corrected and is refused by name, as are frames
that do not map one to one onto the slices (several time frames of one position: a dynamic
series, not one activity image).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from pydicom.dataset import Dataset

from services.dosimetry.imaging.dicom_time import instance_utc_offset, parse_dicom_datetime
from services.dosimetry.imaging.errors import NoActivitySeriesError
from services.dosimetry.imaging.grid import Grid

__all__ = ["decay_uncorrected_frames"]


def _first(holder: Dataset, keyword: str) -> Dataset:
    seq = holder.get(keyword)
    return seq[0] if seq else Dataset()


def _frame_time(frame: Dataset, zone: timedelta | None) -> tuple[datetime | None, float]:
    """Acquisition start and duration (s) of one frame."""
    content = _first(frame, "FrameContentSequence")
    converted = _first(frame, "UnassignedPerFrameConvertedAttributesSequence")
    when = parse_dicom_datetime(content.get("FrameAcquisitionDateTime"), require_time=True, utc_offset=zone) \
        or parse_dicom_datetime(converted.get("AcquisitionDate"), converted.get("AcquisitionTime"),
                                require_time=True, utc_offset=zone)
    duration_ms = content.get("FrameAcquisitionDuration")
    if duration_ms in (None, ""):
        duration_ms = converted.get("ActualFrameDuration")
    return when, float(duration_ms or 0) / 1000.0


def _frame_position(frame: Dataset, shared: Dataset) -> np.ndarray | None:
    plane = _first(frame, "PlanePositionSequence") or _first(shared, "PlanePositionSequence")
    position = plane.get("ImagePositionPatient")
    return None if not position else np.array([float(v) for v in position], dtype=np.float64)


def decay_uncorrected_frames(ds: Dataset, grid: Grid, values: np.ndarray, reference: datetime,
                             half_life_s: float) -> tuple[np.ndarray, float]:
    """``values`` (the volume of the enhanced instance ``ds`` on ``grid``) with each slice
    corrected from its frame's acquisition time to ``reference``; the overall factor is 1."""
    from services.dosimetry.imaging.volume import _decay_to, _duration_factor

    what = f"enhanced PT instance {ds.get('SOPInstanceUID', '?')} with DecayCorrection NONE"
    frames = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    if len(frames) != grid.shape[0]:
        raise NoActivitySeriesError(
            f"{what}: {len(frames)} frames for {grid.shape[0]} slices (PerFrameFunctionalGroupsSequence); several "
            "time frames of one position (a dynamic series) are not one activity image", "NumberOfFrames")
    zone = instance_utc_offset(ds)
    step = grid.affine[:3, 0]
    out = values.copy()
    seen: set[int] = set()
    for n, frame in enumerate(frames, start=1):
        position = _frame_position(frame, shared)
        level = None if position is None else float((position - grid.first_position_mm) @ step / (step @ step))
        k = None if level is None else round(level)
        if k is None or level is None or abs(level - k) > 0.01 or not 0 <= k < grid.shape[0] or k in seen:
            raise NoActivitySeriesError(f"{what}: frame {n} does not lie on its own slice of the volume (Plane "
                                        "Position Sequence (0020,9113))", "PerFrameFunctionalGroupsSequence")
        seen.add(k)
        when, duration_s = _frame_time(frame, zone)
        if when is None:
            raise NoActivitySeriesError(
                f"{what}: frame {n} has no Frame Acquisition DateTime (0018,9074) (Frame Content Sequence) nor "
                "converted AcquisitionDate/Time: its values are at an unknown time, so its decay cannot be "
                "corrected", "FrameAcquisitionDateTime")
        out[k] *= _duration_factor(duration_s, half_life_s) * _decay_to(when, reference, half_life_s)
    return out, 1.0
