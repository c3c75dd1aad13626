"""Voxel grids in patient coordinates (DICOM PS3.3 C.7.6.2.1.1, Image Plane module).

A :class:`Grid` maps an array index ``(k, j, i)`` (slice, row, column) to the patient position
``(x, y, z)`` in mm through a 4×4 affine whose columns are the slice step, the row step
(``PixelSpacing[0]`` along the column direction cosines ``ImageOrientationPatient[3:]``), the
column step (``PixelSpacing[1]`` along the row direction cosines ``ImageOrientationPatient[:3]``)
and the centre of the first voxel (``ImagePositionPatient`` of the first slice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Grid"]


@dataclass(frozen=True)
class Grid:
    """Shape ``(slices, rows, columns)`` and index → patient affine (mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    frame_of_reference_uid: str = ""

    @classmethod
    def from_dicom(cls, shape: tuple[int, int, int], first_position_mm: np.ndarray,
                   orientation: np.ndarray, pixel_spacing_mm: tuple[float, float],
                   slice_step_mm: np.ndarray, frame_of_reference_uid: str = "") -> Grid:
        """Build from Image Plane attributes; ``slice_step_mm`` is the vector between slices."""
        row_dir = np.asarray(orientation[:3], dtype=np.float64)
        col_dir = np.asarray(orientation[3:], dtype=np.float64)
        affine = np.eye(4)
        affine[:3, 0] = np.asarray(slice_step_mm, dtype=np.float64)
        affine[:3, 1] = col_dir * pixel_spacing_mm[0]
        affine[:3, 2] = row_dir * pixel_spacing_mm[1]
        affine[:3, 3] = np.asarray(first_position_mm, dtype=np.float64)
        return cls(shape, affine, frame_of_reference_uid)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along (slice, row, column) in mm."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def first_position_mm(self) -> np.ndarray:
        return np.asarray(self.affine[:3, 3])

    @property
    def orientation(self) -> np.ndarray:
        """``ImageOrientationPatient``: row direction cosines then column direction cosines."""
        col = self.affine[:3, 2] / np.linalg.norm(self.affine[:3, 2])
        row = self.affine[:3, 1] / np.linalg.norm(self.affine[:3, 1])
        return np.concatenate([col, row])

    def index_to_patient(self, index_kji: np.ndarray) -> np.ndarray:
        """Patient positions (…, 3) of fractional indices (…, 3)."""
        idx = np.asarray(index_kji, dtype=np.float64)
        return np.asarray(idx @ self.affine[:3, :3].T + self.affine[:3, 3])

    def patient_to_index(self, xyz_mm: np.ndarray) -> np.ndarray:
        """Fractional indices (…, 3) of patient positions (…, 3)."""
        inv = np.linalg.inv(self.affine)
        pts = np.asarray(xyz_mm, dtype=np.float64)
        return np.asarray(pts @ inv[:3, :3].T + inv[:3, 3])

    def corners_mm(self) -> np.ndarray:
        """The 8 outer corners of the volume (voxel edges, not centres), shape (8, 3)."""
        lo = -0.5
        hi = [s - 0.5 for s in self.shape]
        corners = np.array([[a, b, c] for a in (lo, hi[0]) for b in (lo, hi[1]) for c in (lo, hi[2])])
        return self.index_to_patient(corners)

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        corners = self.corners_mm()
        return corners.min(axis=0), corners.max(axis=0)

    def overlap_fraction(self, other: Grid) -> float:
        """Share of this grid's voxel centres that lie inside ``other``'s volume."""
        k, j, i = (np.arange(n, dtype=np.float64) for n in self.shape)
        # Sampling a sub-lattice is enough for an overlap test and keeps it cheap.
        sub = [a[:: max(1, len(a) // 16)] for a in (k, j, i)]
        kk, jj, ii = np.meshgrid(*sub, indexing="ij")
        pts = self.index_to_patient(np.stack([kk, jj, ii], axis=-1).reshape(-1, 3))
        idx = other.patient_to_index(pts)
        inside = np.all((idx >= -0.5) & (idx <= np.array(other.shape) - 0.5), axis=1)
        return float(inside.mean())
