"""An axial slice of a voxel job's RT Dose over the CT, with the VOI contours of the SEG.

Pure: DICOM datasets in (as the page fetched them from the PACS), figure out. Nothing is
resampled: the CT slice nearest the dose plane, the dose plane and each segment's mask are drawn
at their own positions in patient coordinates (mm, ``ImagePositionPatient`` and
``PixelSpacing``), so each layer keeps its own grid. Axial images only (``ImageOrientationPatient``
1/0/0/0/1/0); anything else is refused with :class:`DoseMapError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure as MplFigure
from pydicom.dataset import Dataset

from netliver.report.plots import _COLOURS, STYLE, FigureSpec, _new

__all__ = ["DoseMapError", "DoseSlice", "DoseVolume", "dose_map_figure", "dose_slice", "load_dose"]

#: CT display window (abdomen, level 40 HU, width 400 HU).
_CT_WINDOW = (-160.0, 240.0)
_AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


class DoseMapError(Exception):
    """The images cannot give an axial dose map (a sentence for the page)."""


@dataclass(frozen=True)
class Plane:
    """One axial image: values (rows × columns) and where its pixel centres lie (mm)."""

    values: np.ndarray
    x0: float
    y0: float
    dx: float
    dy: float
    z: float

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``imshow`` extent (left, right, bottom, top) with row 0 at the top (anterior)."""
        rows, cols = self.values.shape
        return (self.x0 - self.dx / 2, self.x0 + (cols - 0.5) * self.dx,
                self.y0 + (rows - 0.5) * self.dy, self.y0 - self.dy / 2)


@dataclass(frozen=True)
class DoseVolume:
    sop_instance_uid: str
    frame_of_reference_uid: str
    dose_gy: np.ndarray  # frames × rows × columns
    z_mm: tuple[float, ...]
    x0: float
    y0: float
    dx: float
    dy: float
    thickness_mm: float

    @property
    def peak_index(self) -> int:
        """The frame holding the highest dose (the default slice)."""
        return int(np.argmax(self.dose_gy.reshape(self.dose_gy.shape[0], -1).max(axis=1)))

    def plane(self, index: int) -> Plane:
        return Plane(self.dose_gy[index], self.x0, self.y0, self.dx, self.dy, self.z_mm[index])


@dataclass(frozen=True)
class DoseSlice:
    """What the page says about the drawn slice (its numbers table)."""

    index: int
    count: int
    z_mm: float
    max_gy: float
    ct_z_mm: float | None
    segments: tuple[str, ...]


def _axial(ds: Dataset, what: str) -> None:
    orientation = np.array([float(v) for v in ds.get("ImageOrientationPatient", [])] or [0.0] * 6)
    if orientation.shape != (6,) or not np.allclose(orientation, _AXIAL, atol=1e-3):
        raise DoseMapError(f"the {what} is not axial (ImageOrientationPatient {list(orientation)})")


def load_dose(ds: Dataset) -> DoseVolume:
    """The dose grid of an RT Dose instance, in Gy."""
    _axial(ds, "RT Dose")
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    position = [float(v) for v in ds.ImagePositionPatient]
    pixels = np.asarray(ds.pixel_array, dtype=np.float64) * float(ds.DoseGridScaling)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    dy, dx = (float(v) for v in ds.PixelSpacing)
    z = tuple(position[2] + o for o in offsets)
    thickness = abs(offsets[1] - offsets[0]) if len(offsets) > 1 else float(ds.get("SliceThickness", 1.0) or 1.0)
    return DoseVolume(str(ds.SOPInstanceUID), str(ds.get("FrameOfReferenceUID", "")), pixels, z, position[0],
                      position[1], dx, dy, thickness)


def _ct_plane(ct: Sequence[Dataset], z: float) -> Plane | None:
    if not ct:
        return None
    nearest = min(ct, key=lambda d: abs(float(d.ImagePositionPatient[2]) - z))
    _axial(nearest, "CT")
    hu = np.asarray(nearest.pixel_array, dtype=np.float64) * float(nearest.get("RescaleSlope", 1) or 1) + float(
        nearest.get("RescaleIntercept", 0) or 0)
    x0, y0, zc = (float(v) for v in nearest.ImagePositionPatient)
    dy, dx = (float(v) for v in nearest.PixelSpacing)
    return Plane(hu, x0, y0, dx, dy, zc)


def _segment_planes(seg: Dataset | None, z: float, tolerance_mm: float) -> list[tuple[str, Plane]]:
    """Each segment's mask in the SEG frame nearest ``z`` (within ``tolerance_mm``)."""
    if seg is None:
        return []
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    shared = seg.SharedFunctionalGroupsSequence[0]
    dy, dx = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    if "PlaneOrientationSequence" in shared:
        _axial(shared.PlaneOrientationSequence[0], "SEG")
    frames = np.asarray(seg.pixel_array)
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    best: dict[str, tuple[float, Plane]] = {}
    for i, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        x0, y0, zf = (float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient)
        distance = abs(zf - z)
        label = labels.get(int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber), "?")
        if distance <= tolerance_mm and (label not in best or distance < best[label][0]):
            best[label] = (distance, Plane(frames[i].astype(np.float64), x0, y0, dx, dy, zf))
    return [(label, best[label][1]) for label in labels.values() if label in best and best[label][1].values.any()]


def dose_slice(volume: DoseVolume, index: int, ct: Sequence[Dataset], seg: Dataset | None) -> DoseSlice:
    ct_plane = _ct_plane(ct, volume.z_mm[index])
    segments = _segment_planes(seg, volume.z_mm[index], volume.thickness_mm / 2)
    return DoseSlice(index, len(volume.z_mm), volume.z_mm[index], float(volume.dose_gy[index].max()),
                     ct_plane.z if ct_plane else None, tuple(label for label, _ in segments))


def dose_map_figure(volume: DoseVolume, index: int, ct: Sequence[Dataset], seg: Dataset | None,
                    name: str, title: str) -> FigureSpec:
    """The slice ``index`` of ``volume`` over its CT with the SEG's contours."""
    info = dose_slice(volume, index, ct, seg)
    alt = (f"Axial dose map, slice {index + 1} of {info.count} at z = {info.z_mm:.1f} mm, over the CT slice nearest "
           f"it: absorbed dose up to {info.max_gy:.1f} Gy in this slice; contours of the segmentation: "
           + (", ".join(info.segments) or "none in this slice") + ".")

    def build() -> MplFigure:
        with rc_context(STYLE):
            fig = _new()
            fig.set_size_inches(8.0, 6.4)
            ax = fig.add_subplot()
            plane = volume.plane(index)
            ct_plane = _ct_plane(ct, plane.z)
            if ct_plane is not None:
                ax.imshow(ct_plane.values, cmap="gray", vmin=_CT_WINDOW[0], vmax=_CT_WINDOW[1], extent=ct_plane.extent,
                          interpolation="nearest")
            top = float(volume.dose_gy.max()) or 1.0
            shown: Any = np.ma.masked_less_equal(plane.values, 0.01 * top)
            image = ax.imshow(shown, cmap="viridis", vmin=0, vmax=top, alpha=0.6, extent=plane.extent,
                              interpolation="nearest")
            fig.colorbar(image, ax=ax, label="Absorbed dose (Gy)", shrink=0.85)
            for k, (label, mask) in enumerate(_segment_planes(seg, plane.z, volume.thickness_mm / 2)):
                colour = _COLOURS[(k + 1) % len(_COLOURS)]
                ax.contour(mask.values, levels=[0.5], colors=[colour], linewidths=2,
                           linestyles=["solid", "dashed", "dotted", "dashdot"][k % 4], extent=mask.extent,
                           origin="upper")
                ax.plot([], [], color=colour, linewidth=2, linestyle=["solid", "dashed", "dotted", "dashdot"][k % 4],
                        label=label)
            ax.set_xlim(plane.extent[0], plane.extent[1])
            ax.set_ylim(plane.extent[2], plane.extent[3])
            ax.set_xlabel("x (mm, patient left →)")
            ax.set_ylabel("y (mm, posterior ↓)")
            if info.segments:
                ax.legend(loc="lower right", fontsize=9)
            under = f"; CT z = {ct_plane.z:.1f} mm" if ct_plane is not None else "; no CT"
            ax.set_title(f"Dose map, axial slice {index + 1}/{info.count} (z = {info.z_mm:.1f} mm{under})", fontsize=12)
            return fig

    return FigureSpec(name, title, alt, build)
