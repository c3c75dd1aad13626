"""The gateway's PACS hook and the dosimetry worker classify a study the same way.

The hook decides from Orthanc's tags whether a study is a Y-90 record or a Tc-99m MAA study and
starts the job; the worker reads the same RadiopharmaceuticalInformationSequence (0054,0016) from
the DICOM and decides between a Y-90 record and an MAA simulation. For every item below, the
kind the hook gives must be the one the worker's nuclide implies.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.dataset import Dataset

from gateway.pacs_hook import classify_study
from services.dosimetry.imaging.volume import radiopharmaceutical

Y90_S = 64.1 * 3600
TC99M_S = 6.0067 * 3600


def _item(half_life_s: float | None, name: str, code: str) -> dict[str, Any]:
    item: dict[str, Any] = {"Radiopharmaceutical": name}
    if half_life_s is not None:
        item["RadionuclideHalfLife"] = f"{half_life_s:.6g}"
    if code:
        item["RadionuclideCodeSequence"] = [{"CodeValue": code, "CodingSchemeDesignator": "SCT"}]
    return item


def _dataset(modality: str, item: dict[str, Any]) -> Dataset:
    rp = Dataset()
    for key, value in item.items():
        if key == "RadionuclideCodeSequence":
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator = value[0]["CodeValue"], "SCT"
            rp.RadionuclideCodeSequence = [code]
        else:
            setattr(rp, key, value)
    ds = Dataset()
    ds.Modality = modality
    ds.RadiopharmaceuticalInformationSequence = [rp]
    return ds


def _kind_the_worker_implies(modality: str, item: dict[str, Any]) -> str:
    pharma, _ = radiopharmaceutical(_dataset(modality, item))
    nuclide = pharma.nuclide if pharma is not None else "unknown"
    name = str(item.get("Radiopharmaceutical", "")).lower()
    if nuclide == "Y-90":
        return "y90-pet" if modality == "PT" else "y90-spect"
    if nuclide == "Tc-99m" and modality == "NM" and "maa" in name:
        return "maa-spect"
    return "none"


@pytest.mark.parametrize(("modality", "half_life_s", "name", "code"), [
    ("PT", Y90_S, "", ""),
    ("PT", Y90_S * 1.005, "", ""),            # within 1 %: Y-90 on both sides
    ("PT", Y90_S * 1.015, "", ""),            # 1.5 % off, no code
    ("NM", Y90_S * 0.985, "Y-90 microspheres", ""),
    ("NM", TC99M_S * 1.015, "Tc99m MAA", ""),  # 1.5 % off Tc-99m, no code
    ("NM", TC99M_S * 0.995, "Tc99m MAA", ""),
    ("NM", None, "Tc99m MAA", ""),             # no half-life, no code: the names decide
    ("PT", None, "90Y glass microspheres", ""),
    ("PT", None, "", "14691008"),              # the code alone: Y-90
    ("NM", Y90_S, "Tc99m MAA", "72454006"),    # the code outranks a contradicting half-life
    ("NM", TC99M_S * 1.1, "Tc99m MAA", ""),    # a stated half-life of no known nuclide
])
def test_the_pacs_hook_and_the_worker_classify_a_study_alike(modality: str, half_life_s: float | None,
                                                             name: str, code: str) -> None:
    item = _item(half_life_s, name, code)
    hook_kind = classify_study([{"modality": modality, "radiopharmaceutical": item}, {"modality": "CT"}])[0]
    assert hook_kind == _kind_the_worker_implies(modality, item)
