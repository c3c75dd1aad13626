"""A real Orthanc holding compressed instances: they are fetched in their stored transfer syntax
and decoded here. Asked for uncompressed data, Orthanc answers 500 for JPEG 2000 (it cannot
decode it) and transcodes RLE and JPEG-LS itself, so our decoders would never run.

And a PACS that refuses access (HTTP 403) is a configuration error, not "PACS down".
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
from pydicom import uid
from pydicom.dataset import Dataset

from infra.orthanc_process import OrthancProcess
from services.dosimetry.imaging.dicomweb import make_client
from services.dosimetry.imaging.errors import PacsConfigurationError
from services.dosimetry.imaging.phantoms import build_study, two_compartment_liver, upload_datasets
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry

C_GY_KG_PER_GBQ = 49.67  # EANM 2022 dose constant
LIVER = ("normal liver", "tumour 1", "tumour 2")


def _rho_g_per_ml(hu: float) -> float:
    # Schneider 1996 fit (k-Wave form) for −70 < HU ≤ 98, kg/m³ → g/mL
    return (0.9082709691264 * (hu + 1000.0) + 103.6151457847139) / 1000.0


def _compressed(ds: Dataset, syntax: str) -> Dataset:
    copy = deepcopy(ds)
    copy.compress(syntax)
    return copy


def test_a_compressed_study_is_fetched_as_stored_and_gives_the_analytic_doses(orthanc: OrthancProcess) -> None:
    phantom = two_compartment_liver(n=32, voxel_mm=6.63)
    study = build_study(phantom, "NM", seed=70, ct_noise_hu=0.0)
    syntaxes = (uid.JPEG2000Lossless, uid.JPEGLSLossless, uid.RLELossless)
    activity = [_compressed(ds, uid.JPEG2000Lossless) for ds in study.activity]
    ct = [_compressed(ds, syntaxes[k % 3]) for k, ds in enumerate(study.ct)]
    assert study.seg is not None
    upload_datasets(orthanc.url, [*activity, *ct, study.seg])
    client = make_client(orthanc.dicomweb_url)
    result = run_voxel_dosimetry(client, study.study_uid, 2.0, "ldm", study.seg_series_uid, store=False)
    by_name = {v.name: v for v in result.vois}
    for name, names in (("liver", LIVER), ("tumour 1", ("tumour 1",)), ("normal liver", ("normal liver",))):
        mass_kg = int(phantom.mask(*names).sum()) * phantom.voxel_ml * _rho_g_per_ml(60.0) / 1000.0
        expected = C_GY_KG_PER_GBQ * 2.0 * phantom.activity_fraction(*names) / mass_kg
        assert by_name[name].metrics["Dmean"] == pytest.approx(expected, rel=1e-6), name


def test_a_pacs_refusing_access_fails_as_a_configuration_error(orthanc_factory: Any, tmp_path: Path) -> None:
    """Orthanc's HTTP filter (Lua ``IncomingHttpRequestFilter``) refuses DICOMweb: it answers 403."""
    script = tmp_path / "deny-dicomweb.lua"
    script.write_text("function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n"
                      "  return string.find(uri, '/dicom-web/', 1, true) == nil\n"
                      "end\n")
    pacs = orthanc_factory(lua_scripts=[script])
    study = build_study(two_compartment_liver(n=16, voxel_mm=13.26), "NM", seed=71, with_seg=False)
    upload_datasets(pacs.url, study.datasets())
    with pytest.raises(PacsConfigurationError, match=r"refused netliver's credentials \(HTTP 403\)") as err:
        run_voxel_dosimetry(make_client(pacs.dicomweb_url), study.study_uid, 2.0, "ldm")
    assert err.value.status == 502 and "not retried" in err.value.message
    assert err.value.to_fhir_error().headers.get("Retry-After") is None
