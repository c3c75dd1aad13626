"""Images in the transfer syntaxes PACS store them in, decoded here; pixel data that cannot be
decoded or is too large, refused by name before it costs memory.

Each compressed variant is lossless, so the pipeline must give exactly the doses of the
uncompressed study, with LDM and with DVK.
"""

from __future__ import annotations

import io
from copy import deepcopy
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.dataset import Dataset

from services.dosimetry.imaging.errors import ImagingError, PixelDataError
from services.dosimetry.imaging.phantoms import (
    PhantomStudy,
    build_study,
    dataset_bytes,
    two_compartment_liver,
)
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from services.dosimetry.imaging.pixels import MAX_DECODED_BYTES, decoded_pixels
from services.dosimetry.imaging.volume import activity_volume, ct_volume
from tests.support.memory_dicomweb import MemoryDicomweb

SYNTAXES = [uid.JPEG2000Lossless, uid.JPEGLSLossless, uid.RLELossless, uid.DeflatedExplicitVRLittleEndian]


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    # 48 × 48 NM frames: the JPEG 2000 encoder uses 6 wavelet levels and needs at least 32 pixels
    return build_study(two_compartment_liver(n=48, voxel_mm=4.42), "NM", seed=60)


def _as_stored(ds: Dataset, syntax: str) -> Dataset:
    """``ds`` written in ``syntax`` and read back, as a PACS would serve it."""
    copy = deepcopy(ds)
    if syntax == uid.DeflatedExplicitVRLittleEndian:
        copy.file_meta.TransferSyntaxUID = syntax
    else:
        copy.compress(syntax)
    buf = io.BytesIO()
    copy.save_as(buf, enforce_file_format=True)
    back = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    assert back.file_meta.TransferSyntaxUID == syntax
    return back


def _doses(study: PhantomStudy, datasets: list[Dataset], method: str) -> dict[str, float]:
    result = run_voxel_dosimetry(MemoryDicomweb(datasets), study.study_uid, 1.5, method, study.seg_series_uid,
                                 store=False)
    return {v.name: v.metrics["Dmean"] for v in result.vois}


@pytest.fixture(scope="module")
def reference(study: PhantomStudy) -> dict[str, dict[str, float]]:
    return {m: _doses(study, study.datasets(), m) for m in ("ldm", "dvk")}


@pytest.fixture(scope="module")
def stored(study: PhantomStudy) -> dict[str, list[Dataset]]:
    """The study's images in each transfer syntax, encoded once (on first use)."""
    class Encoded(dict[str, list[Dataset]]):
        def __missing__(self, syntax: str) -> list[Dataset]:
            self[syntax] = [_as_stored(ds, syntax) for ds in [*study.activity, *study.ct]]
            return self[syntax]

    return Encoded()


@pytest.mark.parametrize("method", ["ldm", "dvk"])
@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: uid.UID(s).keyword)
def test_a_study_stored_compressed_gives_the_uncompressed_doses(study: PhantomStudy, reference: Any,
                                                               stored: dict[str, list[Dataset]],
                                                               syntax: str, method: str) -> None:
    assert study.seg is not None
    doses = _doses(study, [*stored[syntax], study.seg], method)
    assert doses.keys() == reference[method].keys()
    for name, value in reference[method].items():
        assert doses[name] == pytest.approx(value, rel=1e-12), name


def test_pixel_data_shorter_than_declared_is_refused_by_name(study: PhantomStudy) -> None:
    ct = [deepcopy(ds) for ds in study.ct]
    ct[3].PixelData = ct[3].PixelData[: len(ct[3].PixelData) // 2]
    with pytest.raises(PixelDataError, match=r"PixelData \(7FE0,0010\) cannot be decoded") as err:
        ct_volume(ct)
    assert err.value.status == 422 and err.value.expression == "PixelData"
    assert str(ct[3].SOPInstanceUID) in err.value.message


def test_a_declared_size_over_the_bound_is_refused_before_decoding(study: PhantomStudy) -> None:
    nm = deepcopy(study.activity[0])
    nm.NumberOfFrames = nm.NumberOfSlices = 40000  # 48 × 48 × 2 bytes × 40000 frames ≈ 0.17 GiB: allowed
    nm.Rows = nm.Columns = 256  # now 256 × 256 × 2 × 40000 = 4.9 GiB declared
    with pytest.raises(PixelDataError, match=r"declares 4\.9 GiB of pixels") as err:
        decoded_pixels(nm, "NM instance")
    assert err.value.expression == "NumberOfFrames"
    with pytest.raises(ImagingError, match="GiB of pixels"):
        activity_volume([nm])
    assert MAX_DECODED_BYTES == 1 << 30


def test_a_transfer_syntax_without_a_decoder_is_refused_naming_it(study: PhantomStudy) -> None:
    ds = pydicom.dcmread(io.BytesIO(dataset_bytes(study.ct[0])))
    ds.file_meta.TransferSyntaxUID = uid.MPEG2MPML  # video: no pixel handler decodes it
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    with pytest.raises(PixelDataError, match=r"TransferSyntaxUID \(0002,0010\)") as err:
        decoded_pixels(ds, "CT instance")
    assert err.value.expression == "TransferSyntaxUID"


def test_decoded_values_equal_the_stored_ones(study: PhantomStudy) -> None:
    for syntax in SYNTAXES:
        back = _as_stored(study.ct[5], syntax)
        np.testing.assert_array_equal(decoded_pixels(back, "CT"), study.ct[5].pixel_array)
