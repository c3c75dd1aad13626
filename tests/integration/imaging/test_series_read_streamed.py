"""From a real Orthanc, the activity and SEG series are read by the streamed plain reader (not
dicomweb-client's ``retrieve_series`` and ``dcmread``), and give the same elements; the series a
job reads are listed by Modality, and a segmentation UID is checked by its instances."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from dicomweb_client.api import DICOMwebClient

from infra.orthanc_process import OrthancProcess
from services.dosimetry.imaging.dicomweb import (
    JOB_MODALITIES,
    PacsClient,
    fetch_segmentations,
    fetch_study,
    list_series,
    make_client,
)
from services.dosimetry.imaging.errors import SegmentationError
from services.dosimetry.imaging.phantoms import build_study, two_compartment_liver, upload_datasets


def _elements(ds: object) -> dict[str, object]:
    return {str(e.tag): e.value for e in ds}  # type: ignore[attr-defined]


def test_the_activity_and_seg_series_are_streamed_and_read_as_dcmread_reads_them(
        orthanc: OrthancProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    study = build_study(two_compartment_liver(n=16, voxel_mm=8.0), "NM", seed=11)
    assert study.seg is not None
    upload_datasets(orthanc.url, study.datasets())
    plain = DICOMwebClient(orthanc.dicomweb_url)  # dicomweb-client's own reader, as the reference
    expected_nm = fetch_study(plain, study.study_uid).activity
    expected_seg = fetch_segmentations(plain, study.study_uid, study.seg_series_uid)

    def refused(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("retrieve_series was called: the series was not streamed")

    monkeypatch.setattr(PacsClient, "retrieve_series", refused)
    client = make_client(orthanc.dicomweb_url)
    got_nm = fetch_study(client, study.study_uid).activity
    got_seg = fetch_segmentations(client, study.study_uid, study.seg_series_uid)
    assert [_elements(ds) for ds in got_nm] == [_elements(ds) for ds in expected_nm]
    assert [_elements(ds) for ds in got_seg] == [_elements(ds) for ds in expected_seg]
    assert got_seg[0].file_meta.TransferSyntaxUID == expected_seg[0].file_meta.TransferSyntaxUID


def test_orthanc_lists_the_job_modalities_alone_and_a_wrong_segmentation_uid_is_named(orthanc: OrthancProcess) -> None:
    study = build_study(two_compartment_liver(n=16, voxel_mm=8.0), "NM", seed=12)
    upload_datasets(orthanc.url, study.datasets())
    client = make_client(orthanc.dicomweb_url)
    listed = list_series(client, study.study_uid, JOB_MODALITIES)
    assert sorted(s.modality for s in listed) == ["CT", "NM"]
    assert next(s.instances for s in listed if s.modality == "CT") == len(study.ct)
    assert sorted(s.modality for s in list_series(client, study.study_uid)) == ["CT", "NM", "SEG"]
    with pytest.raises(SegmentationError, match=r"segmentation series 1\.2\.3\.999 is not in study"):
        fetch_segmentations(client, study.study_uid, "1.2.3.999")
    with pytest.raises(SegmentationError, match="is CT, not a DICOM SEG or RTSTRUCT"):
        fetch_segmentations(client, study.study_uid, study.ct_series_uid)


def test_an_orthanc_names_its_process_only_while_it_runs(orthanc_factory: Any, tmp_path: Path) -> None:
    """The benchmark reads the PACS's CPU by this pid: it is the Orthanc this object started."""
    assert OrthancProcess(tmp_path / "never-started").pid is None
    proc = orthanc_factory()
    pid = proc.pid
    assert pid is not None and b"Orthanc" in Path(f"/proc/{pid}/cmdline").read_bytes()
    proc.stop()
    assert proc.pid is None


def test_terminate_asks_orthanc_to_exit_and_stop_then_reaps_it(orthanc_factory: Any) -> None:
    """``terminate`` sends SIGTERM and returns (a caller stops other processes meanwhile); Orthanc
    exits on it alone, and ``stop`` reaps it; both are safe to call again."""
    proc = orthanc_factory()
    pid = proc.pid
    assert pid is not None
    proc.terminate()
    proc.terminate()  # the signal was sent once; this is a no-op
    assert proc._proc is not None and proc._proc.wait(timeout=30) == 0  # exited cleanly on SIGTERM
    assert proc.pid is None  # no longer running, though not yet reaped by stop
    proc.stop()
    proc.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no such process
