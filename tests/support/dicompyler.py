"""dicompyler-core (a second, independent reader of RT Dose and RTSTRUCT) under pydicom 3.

dicompyler-core 0.5.6, its latest release, imports ``pydicom.dicomio.read_file``, the pydicom 2
name of :func:`pydicom.dcmread` that pydicom 3 removed; the alias is restored before import.
"""

from __future__ import annotations

from types import ModuleType

import pydicom
import pydicom.dicomio

__all__ = ["dicompyler_dose", "dicompyler_dvhcalc"]


def _alias() -> None:
    if not hasattr(pydicom.dicomio, "read_file"):
        pydicom.dicomio.read_file = pydicom.dcmread  # type: ignore[attr-defined]


def dicompyler_dose() -> ModuleType:
    _alias()
    from dicompylercore import dose

    return dose


def dicompyler_dvhcalc() -> ModuleType:
    _alias()
    from dicompylercore import dvhcalc

    return dvhcalc
