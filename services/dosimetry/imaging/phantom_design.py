"""Designs of the synthetic phantoms: compartments on the emission grid, with exact counts.

A :class:`Phantom` is a label map of :class:`Compartment` s on the emission ("SPECT") grid, each
with an integer count density (or activity concentration) and a CT number, so that the analytic
doses of the tests are exact sums over known voxels. :func:`sphere_in_cylinder` (uniform hot
sphere in a warm cylinder), :func:`two_compartment_liver` (liver with tumours at T/N = 4),
:func:`lung_shunt` (liver, tumour and lungs holding a set lung shunt fraction),
:func:`four_lesion_liver` (liver with four lesions of their own uptake under two lungs).
:mod:`.phantoms` writes them as DICOM studies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

__all__ = [
    "ADMINISTRATION",
    "FOUR_LESIONS_MM",
    "NUCLIDES",
    "Compartment",
    "Phantom",
    "bool_array",
    "four_lesion_liver",
    "lung_shunt",
    "sphere_in_cylinder",
    "two_compartment_liver",
]

# Radionuclides as DICOM CID 18 codes (SNOMED CT) and half-lives (DDEP evaluated values):
# Y-90 64.1 h (DDEP), Tc-99m 6.0067 h.
NUCLIDES: dict[str, tuple[str, str, float]] = {
    "Y-90": ("14691008", "^90^Yttrium", 64.1 * 3600.0),
    "Tc-99m": ("72454006", "^99m^Technetium", 6.0067 * 3600.0),
}

# SNOMED CT codes of the segmented properties (DICOM CID 7150 / 7151 style).
_CATEGORY = {"organ": ("91772007", "Organ"), "abnormal": ("49755003", "Morphologically Abnormal Structure"),
             "tissue": ("85756007", "Tissue")}
_TYPE = {"liver": ("10200004", "Liver"), "tumour": ("108369006", "Neoplasm"), "lung": ("39607008", "Lung"),
         "tissue": ("85756007", "Tissue")}

# Fixed design times (the study is deterministic): administration, then imaging.
ADMINISTRATION = datetime(2024, 3, 5, 9, 30, 0)


@dataclass(frozen=True)
class Compartment:
    """One region of a phantom: its count density per voxel (relative activity concentration),
    its CT number and, when it is a VOI, its SEG label and property type."""

    name: str
    counts_per_voxel: int
    hu: float
    seg_type: str | None = None  # "liver" | "tumour" | "lung" | "tissue" | None (no SEG segment)


@dataclass
class Phantom:
    """A phantom designed on the emission grid.

    ``labels`` holds, per emission voxel, the index of its compartment in ``compartments``
    (later compartments overwrite earlier ones, so a tumour is drawn after its liver).
    ``segments`` lists the SEG segments as (label, category, type, compartment names united).
    """

    name: str
    n: int
    voxel_mm: float
    compartments: list[Compartment]
    labels: np.ndarray
    segments: list[tuple[str, str, str, tuple[str, ...]]]
    nuclide: str = "Y-90"
    radiopharmaceutical: str = "Y-90 microspheres"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n, self.n, self.n)

    @property
    def voxel_ml(self) -> float:
        return (self.voxel_mm / 10.0) ** 3

    def origin_mm(self) -> np.ndarray:
        """Patient position (x, y, z) of the centre of emission voxel (0, 0, 0)."""
        half = (self.n - 1) / 2.0 * self.voxel_mm
        return np.array([-half, -half, -half - 120.0])

    def centres_mm(self, factor: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates (z, y, x as 3-D arrays) of the grid refined ``factor`` times."""
        step = self.voxel_mm / factor
        first = self.origin_mm() - (factor - 1) / 2.0 * step
        m = self.n * factor
        z = first[2] + step * np.arange(m)
        y = first[1] + step * np.arange(m)
        x = first[0] + step * np.arange(m)
        return np.meshgrid(z, y, x, indexing="ij")

    def counts(self) -> np.ndarray:
        """Design count density per emission voxel (float64)."""
        table = np.array([c.counts_per_voxel for c in self.compartments], dtype=np.float64)
        counts: np.ndarray = table[self.labels]
        return counts

    def hu(self) -> np.ndarray:
        """Design CT number per emission voxel."""
        table = np.array([c.hu for c in self.compartments], dtype=np.float64)
        hu: np.ndarray = table[self.labels]
        return hu

    def mask(self, *names: str) -> np.ndarray:
        """Emission-grid mask of the union of the named compartments."""
        idx = [i for i, c in enumerate(self.compartments) if c.name in names]
        if len(idx) != len(names):
            raise KeyError(f"unknown compartment among {names}")
        return np.isin(self.labels, idx)

    def segment_mask(self, label: str) -> np.ndarray:
        for seg_label, _cat, _typ, names in self.segments:
            if seg_label == label:
                return self.mask(*names)
        raise KeyError(label)

    def activity_fraction(self, *names: str) -> float:
        """Share of all counts inside the named compartments (exact, from the design)."""
        counts = self.counts()
        return float(counts[self.mask(*names)].sum() / counts.sum())


# -- phantom designs --------------------------------------------------------------------------

def _inside_ellipsoid(grid: tuple[np.ndarray, np.ndarray, np.ndarray], centre_xyz: Sequence[float],
                      semi_axes_xyz: Sequence[float]) -> np.ndarray:
    z, y, x = grid
    return bool_array(((x - centre_xyz[0]) / semi_axes_xyz[0]) ** 2
                      + ((y - centre_xyz[1]) / semi_axes_xyz[1]) ** 2
                      + ((z - centre_xyz[2]) / semi_axes_xyz[2]) ** 2 <= 1.0)


def _inside_cylinder(grid: tuple[np.ndarray, np.ndarray, np.ndarray], radius_mm: float) -> np.ndarray:
    _z, y, x = grid
    return bool_array(x ** 2 + y ** 2 <= radius_mm ** 2)


def bool_array(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=bool)


def _phantom(name: str, n: int, voxel_mm: float, compartments: list[Compartment],
             shapes: list[Callable[[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]],
             segments: list[tuple[str, str, str, tuple[str, ...]]], nuclide: str,
             radiopharmaceutical: str) -> Phantom:
    ph = Phantom(name, n, voxel_mm, compartments, np.zeros((n, n, n), dtype=np.int16), segments,
                 nuclide, radiopharmaceutical)
    grid = ph.centres_mm()
    labels = np.zeros((n, n, n), dtype=np.int16)
    for i, shape in enumerate(shapes, start=1):
        labels[shape(grid)] = i
    ph.labels = labels
    return ph


def sphere_in_cylinder(n: int = 48, voxel_mm: float = 4.42, sphere_radius_mm: float = 30.0,
                       sphere_to_background: int = 8, nuclide: str = "Y-90") -> Phantom:
    """A uniform hot sphere (radius ``sphere_radius_mm``) at the centre of a warm water cylinder
    (radius 40 % of the field of view) in air; sphere : background concentration = 8 : 1."""
    radius = 0.4 * n * voxel_mm
    comps = [Compartment("air", 0, -1000.0),
             Compartment("background", 100, 0.0, "tissue"),
             Compartment("sphere", 100 * sphere_to_background, 0.0, "tumour")]
    shapes = [lambda g: _inside_cylinder(g, radius),
              lambda g: _inside_ellipsoid(g, (0.0, 0.0, _zc(n, voxel_mm)), (sphere_radius_mm,) * 3)]
    segments: list[tuple[str, str, str, tuple[str, ...]]] = [("sphere", "abnormal", "tumour", ("sphere",)),
                ("background", "tissue", "tissue", ("background",))]
    return _phantom("sphere-in-cylinder", n, voxel_mm, comps, shapes, segments, nuclide,
                    "Y-90 microspheres" if nuclide == "Y-90" else "Tc99m MAA")


def _zc(n: int, voxel_mm: float) -> float:
    """z of the centre of the field of view (the design puts it 120 mm below the origin)."""
    return -120.0


def two_compartment_liver(n: int = 48, voxel_mm: float = 4.42, tumour_to_normal: int = 4,
                          nuclide: str = "Y-90") -> Phantom:
    """A liver ellipsoid in a soft-tissue body with two spherical tumours (radii 18 and 12 mm)
    whose activity concentration is ``tumour_to_normal`` times that of the normal liver (the
    partition model of Ho 1996 with T/N = 4); no activity outside the liver."""
    scale = n * voxel_mm / 212.16  # keep the anatomy proportional for other grid sizes
    zc = _zc(n, voxel_mm)
    comps = [Compartment("air", 0, -1000.0),
             Compartment("body", 0, 40.0),
             Compartment("normal liver", 100, 60.0),
             Compartment("tumour 1", 100 * tumour_to_normal, 60.0),
             Compartment("tumour 2", 100 * tumour_to_normal, 60.0)]
    shapes = [lambda g: _inside_cylinder(g, 95.0 * scale),
              lambda g: _inside_ellipsoid(g, (-10 * scale, 0.0, zc), (75 * scale, 60 * scale, 55 * scale)),
              lambda g: _inside_ellipsoid(g, (-35 * scale, 10 * scale, zc + 5 * scale), (18 * scale,) * 3),
              lambda g: _inside_ellipsoid(g, (25 * scale, -15 * scale, zc - 10 * scale), (12 * scale,) * 3)]
    segments = [("liver", "organ", "liver", ("normal liver", "tumour 1", "tumour 2")),
                ("tumour 1", "abnormal", "tumour", ("tumour 1",)),
                ("tumour 2", "abnormal", "tumour", ("tumour 2",))]
    return _phantom("two-compartment-liver", n, voxel_mm, comps, shapes, segments, nuclide,
                    "Y-90 microspheres" if nuclide == "Y-90" else "Tc99m MAA")


def lung_shunt(n: int = 48, voxel_mm: float = 4.42, lung_counts_per_voxel: int = 15,
               nuclide: str = "Tc-99m") -> Phantom:
    """A Tc-99m MAA work-up: liver with one tumour (T/N = 4) under two lungs (-750 HU) that hold
    a few counts per voxel (lung shunt); the exact lung shunt fraction is
    ``activity_fraction("lungs")``."""
    scale = n * voxel_mm / 212.16
    zc = _zc(n, voxel_mm)
    comps = [Compartment("air", 0, -1000.0),
             Compartment("body", 0, 40.0),
             Compartment("normal liver", 100, 60.0),
             Compartment("tumour 1", 400, 60.0),
             Compartment("lungs", lung_counts_per_voxel, -750.0)]
    shapes = [lambda g: _inside_cylinder(g, 95.0 * scale),
              lambda g: _inside_ellipsoid(g, (-10 * scale, 0.0, zc - 35 * scale), (70 * scale, 55 * scale, 40 * scale)),
              lambda g: _inside_ellipsoid(g, (-25 * scale, 5 * scale, zc - 35 * scale), (16 * scale,) * 3),
              lambda g: (_inside_ellipsoid(g, (-50 * scale, 0.0, zc + 55 * scale), (35 * scale, 45 * scale, 40 * scale))
                         | _inside_ellipsoid(g, (50 * scale, 0.0, zc + 55 * scale), (35 * scale, 45 * scale, 40 * scale)))]
    segments = [("liver", "organ", "liver", ("normal liver", "tumour 1")),
                ("tumour 1", "abnormal", "tumour", ("tumour 1",)),
                ("lungs", "organ", "lung", ("lungs",))]
    return _phantom("lung-shunt", n, voxel_mm, comps, shapes, segments, nuclide,
                    "Tc99m MAA" if nuclide == "Tc-99m" else "Y-90 microspheres")


#: Centres (x, y, z from the field-of-view centre, mm at 212 mm field of view) and radii of the
#: four lesions of :func:`four_lesion_liver`, all inside its liver and apart from each other.
FOUR_LESIONS_MM: tuple[tuple[tuple[float, float, float], float], ...] = (
    ((-40.0, 10.0, -35.0), 15.0), ((10.0, -20.0, -40.0), 13.0), ((30.0, 15.0, -30.0), 12.0),
    ((-10.0, 25.0, -55.0), 12.0))


def four_lesion_liver(n: int = 48, voxel_mm: float = 4.42, lesion_counts: Sequence[int] = (600, 300, 200, 800),
                      lung_counts_per_voxel: int = 10, nuclide: str = "Y-90",
                      lesion_labels: Sequence[str] = ("lesion 1", "lesion 2", "lesion 3", "lesion 4")) -> Phantom:
    """A liver (normal liver 100 counts per voxel) with four spherical lesions of their own
    uptake (``lesion_counts``), under two lungs (-750 HU) holding ``lung_counts_per_voxel``: the
    patient of the questions across treatments (predicted vs delivered, lung dose, BED, dose per
    lesion). Segments: liver (with its lesions), each lesion, lungs."""
    if len(lesion_counts) != len(FOUR_LESIONS_MM) or len(lesion_labels) != len(FOUR_LESIONS_MM):
        raise ValueError("four lesions: four counts and four labels")
    scale = n * voxel_mm / 212.16
    zc = _zc(n, voxel_mm)
    comps = [Compartment("air", 0, -1000.0), Compartment("body", 0, 40.0), Compartment("normal liver", 100, 60.0),
             *(Compartment(label, int(c), 60.0) for label, c in zip(lesion_labels, lesion_counts, strict=True)),
             Compartment("lungs", lung_counts_per_voxel, -750.0)]

    def sphere(centre: tuple[float, float, float], radius: float) -> Callable[[Any], np.ndarray]:
        return lambda g: _inside_ellipsoid(g, (centre[0] * scale, centre[1] * scale, zc + centre[2] * scale),
                                           (radius * scale,) * 3)

    shapes = [lambda g: _inside_cylinder(g, 95.0 * scale),
              lambda g: _inside_ellipsoid(g, (-10 * scale, 0.0, zc - 35 * scale), (70 * scale, 55 * scale, 40 * scale)),
              *(sphere(centre, radius) for centre, radius in FOUR_LESIONS_MM),
              lambda g: (_inside_ellipsoid(g, (-50 * scale, 0.0, zc + 55 * scale), (35 * scale, 45 * scale, 40 * scale))
                         | _inside_ellipsoid(g, (50 * scale, 0.0, zc + 55 * scale), (35 * scale, 45 * scale, 40 * scale)))]
    segments = [("liver", "organ", "liver", ("normal liver", *lesion_labels)),
                *((label, "abnormal", "tumour", (label,)) for label in lesion_labels),
                ("lungs", "organ", "lung", ("lungs",))]
    return _phantom("four-lesion-liver", n, voxel_mm, comps, shapes, segments, nuclide,
                    "Tc99m MAA" if nuclide == "Tc-99m" else "Y-90 microspheres")
