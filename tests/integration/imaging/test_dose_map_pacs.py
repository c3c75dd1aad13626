"""The page's dose map from a real Orthanc: the RT Dose a report names is found by its SOP Instance
UID among the study's RT Doses (QIDO-RS at instance level) and read with the SEG on its frame."""

from __future__ import annotations

import numpy as np

from gateway.webapp.dose_map import DoseMapSource
from infra.orthanc_process import OrthancProcess
from netliver.settings import Settings
from services.dosimetry.imaging.dicomweb import make_client
from services.dosimetry.imaging.phantoms import build_study, two_compartment_liver, upload_datasets
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry


def test_the_named_rt_dose_is_read_among_the_studys_others(orthanc: OrthancProcess) -> None:
    study = build_study(two_compartment_liver(n=16, voxel_mm=8.0), "NM", seed=21)
    upload_datasets(orthanc.url, study.datasets())
    client = make_client(orthanc.dicomweb_url)
    runs = [run_voxel_dosimetry(client, study.study_uid, activity, "ldm", study.seg_series_uid)
            for activity in (1.0, 2.0, 3.0)]  # three jobs: three RT Dose series in the study
    assert len({r.rtdose_series_uid for r in runs}) == 3
    source = DoseMapSource(Settings(dicomweb_url=orthanc.dicomweb_url))
    middle = runs[1]
    images = source.images(study.study_uid, str(middle.rtdose_sop_instance_uid))
    assert images.volume.sop_instance_uid == middle.rtdose_sop_instance_uid
    # its dose, not another job's (twice the first's activity, two thirds of the last's)
    assert np.isclose(images.volume.dose_gy.max(), middle.dose_gy.max(), rtol=0.01)
    assert not np.isclose(images.volume.dose_gy.max(), runs[0].dose_gy.max(), rtol=0.1)
    assert images.seg is not None and str(images.seg.SeriesInstanceUID) == study.seg_series_uid
