"""The sampled cumulative DVH a voxel-dosimetry report carries in ``presentedForm``.

FHIR R4 has no data type for a curve over a dose axis (``SampledData`` is a series over time),
so the voxel job attaches it to its DiagnosticReport as a ``text/csv`` Attachment, one row per
VOI and volume level: ``voi,role,volume_percent,dose_gy`` where ``dose_gy`` is Dx, the minimum
dose received by the hottest x % of the VOI (x = ``volume_percent``, 0 … 100). The page reads it
back to draw the whole curve. Written by the dosimetry service, read by :mod:`netliver.report`.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from netliver.fhir.builders import attachment

__all__ = ["DVH_CSV_TITLE", "DVH_CSV_TYPE", "DVH_HEADER", "dvh_attachment", "dvh_csv", "read_dvh_csv", "report_dvh"]

DVH_CSV_TYPE = "text/csv"
DVH_CSV_TITLE = "Cumulative dose-volume histogram per VOI (sampled)"
DVH_HEADER = ("voi", "role", "volume_percent", "dose_gy")

#: One VOI's curve: (name, role, ((volume %, Dx Gy), ...)).
Curve = tuple[str, str, Sequence[tuple[float, float]]]


def dvh_csv(curves: Sequence[Curve]) -> bytes:
    """The CSV text of ``curves`` (doses to 0.1 mGy)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DVH_HEADER)
    for name, role, points in curves:
        for volume, dose in points:
            writer.writerow([name, role, f"{volume:g}", f"{dose:.4f}"])
    return out.getvalue().encode("utf-8")


def dvh_attachment(curves: Sequence[Curve]) -> dict[str, Any]:
    return attachment(DVH_CSV_TYPE, dvh_csv(curves), DVH_CSV_TITLE)


def read_dvh_csv(data: bytes) -> dict[str, tuple[tuple[float, float], ...]]:
    """VOI name → ((volume %, Dx Gy), ...) in volume order; {} for text that is not this CSV."""
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error):
        return {}
    if not rows or tuple(rows[0]) != DVH_HEADER:
        return {}
    curves: dict[str, list[tuple[float, float]]] = {}
    for row in rows[1:]:
        try:
            name, _, volume, dose = row
            curves.setdefault(name, []).append((float(volume), float(dose)))
        except ValueError:
            return {}
    return {name: tuple(sorted(points)) for name, points in curves.items()}


def report_dvh(report: Mapping[str, Any]) -> dict[str, tuple[tuple[float, float], ...]]:
    """The sampled DVH a DiagnosticReport carries in ``presentedForm`` ({} when none)."""
    for form in report.get("presentedForm") or []:
        if isinstance(form, Mapping) and form.get("contentType") == DVH_CSV_TYPE and form.get("title") == DVH_CSV_TITLE:
            try:
                return read_dvh_csv(base64.b64decode(str(form.get("data", "")), validate=True))
            except (binascii.Error, ValueError):
                return {}
    return {}
