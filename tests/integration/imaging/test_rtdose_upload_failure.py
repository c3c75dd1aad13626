"""A finished dose computation is kept when only the RT Dose upload fails: the STOW-RS is
retried with backoff, and when the PACS stays away (or refuses the instance) the results come
back without the RT Dose and with a warning saying so, never as a failed job. Real Orthanc for
the study; the STOW-RS goes to a port where nothing listens (the PACS "went away")."""

from __future__ import annotations

from typing import Any

import pytest

from infra.orthanc_process import OrthancProcess, free_port
from services.dosimetry.imaging.dicomweb import fetch_study, make_client
from services.dosimetry.imaging.phantoms import build_study, sphere_in_cylinder, upload_study
from services.dosimetry.imaging.pipeline import RTDOSE_NOT_STORED, run_voxel_dosimetry
from services.dosimetry.imaging.rtdose import build_rtdose, store_rtdose_retrying

pytestmark = pytest.mark.integration


def _dead_pacs() -> Any:
    """A DICOMweb client of a PACS that is gone (nothing listens), without dicomweb-client's own
    retries (they wait ~30 s per call on a refused connection; the pipeline's are under test)."""
    client = make_client(f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=2.0)
    client.set_http_retry_params(retry=False)
    return client


class StowElsewhere:
    """The PACS's DICOMweb client for reads, another (unreachable) one for STOW-RS."""

    def __init__(self, reads: Any, stow: Any) -> None:
        self.reads, self.stow, self.stow_calls = reads, stow, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reads, name)

    def store_instances(self, *args: Any, **kwargs: Any) -> Any:
        self.stow_calls += 1
        return self.stow.store_instances(*args, **kwargs)


def test_dose_results_are_kept_when_the_rtdose_upload_fails(orthanc: OrthancProcess) -> None:
    study = build_study(sphere_in_cylinder(), "PT", seed=7)
    upload_study(orthanc.url, study)
    client = StowElsewhere(make_client(orthanc.dicomweb_url), _dead_pacs())
    result = run_voxel_dosimetry(client, study.study_uid, 1.0, "ldm", study.seg_series_uid,
                                 store_retry_delays_s=(0.01, 0.02))
    assert client.stow_calls == 3  # the first try and two retries
    assert result.rtdose_sop_instance_uid is None
    assert any(v.metrics["Dmean"] > 0 for v in result.vois)
    [warning] = [w for w in result.warnings if w.startswith(RTDOSE_NOT_STORED)]
    assert "3 attempts" in warning and "127.0.0.1" not in warning and "http" not in warning


def test_a_pacs_that_returns_during_the_retries_gets_the_rtdose(orthanc: OrthancProcess) -> None:
    study = build_study(sphere_in_cylinder(), "NM", seed=8)
    upload_study(orthanc.url, study)
    reads = make_client(orthanc.dicomweb_url)
    client = StowElsewhere(reads, _dead_pacs())
    result = run_voxel_dosimetry(client, study.study_uid, 1.0, "ldm", study.seg_series_uid, store=False)
    ds = build_rtdose(result.dose_gy, result.grid, study=next(iter(fetch_study(reads, study.study_uid).ct)),
                      frame_of_reference_uid="", delivered=True, series_description="retry test",
                      deterministic_key="retry-test")

    def pacs_returns(_: float) -> None:
        client.stow = reads  # the PACS answers again before the next attempt

    assert store_rtdose_retrying(client, ds, delays_s=(0.01, 0.01), sleep=pacs_returns) is None
    assert client.stow_calls == 2
    assert str(ds.SOPInstanceUID) in str(reads.search_for_instances(study_instance_uid=study.study_uid))
