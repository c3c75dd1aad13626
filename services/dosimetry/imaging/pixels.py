"""Pixel Data decoded through pydicom's pixel handlers, with a bound and named failures.

Instances arrive in the transfer syntax the PACS stored them in (JPEG 2000, JPEG-LS, JPEG
lossless, RLE, deflate or uncompressed); pydicom decodes them with the decoder packages the
project installs (pylibjpeg with pylibjpeg-openjpeg, pyjpegls, python-gdcm; RLE and deflate
natively). Before anything is decoded, the size the header declares (Rows × Columns ×
NumberOfFrames × SamplesPerPixel × BitsAllocated / 8) must stay under :data:`MAX_DECODED_BYTES`,
so a header claiming gigabytes cannot exhaust the worker's memory.

Failures are :class:`~services.dosimetry.imaging.errors.PixelDataError` (422) naming the
instance and what is wrong: no decoder for its TransferSyntaxUID (0002,0010), or Pixel Data
(7FE0,0010) that does not hold what the header declares (a truncated file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from services.dosimetry.imaging.attributes import plain_get
from services.dosimetry.imaging.errors import PixelDataError

__all__ = ["MAX_DECODED_BYTES", "MAX_VOLUME_BYTES", "check_declared_size", "declared_bytes", "decoded_pixels", "no_decoder_error",
           "without_unused_bits"]

#: Largest decoded pixel array accepted per instance: 1 GiB (a 512 × 512 × 2000 16-bit CT is 1 GiB).
MAX_DECODED_BYTES = 1 << 30
#: Largest volume built from a series (float32 CT or float64 activity): 4 GiB.
MAX_VOLUME_BYTES = 4 << 30


@dataclass(frozen=True, slots=True)
class _PixelHeader:
    """The Image Pixel attributes (PS3.3 C.7.6.3) of one instance as its header gives them, read
    from the Dataset once: the size bound and the direct reading both need them, and every read by
    keyword costs pydicom a look-up (microseconds each, on every slice of a series)."""

    rows: Any
    columns: Any
    frames: Any
    samples: Any
    allocated: Any
    stored: Any
    representation: Any

    @classmethod
    def of(cls, ds: Dataset) -> _PixelHeader:
        return cls(plain_get(ds, "Rows"), plain_get(ds, "Columns"), plain_get(ds, "NumberOfFrames"),
                   plain_get(ds, "SamplesPerPixel"), plain_get(ds, "BitsAllocated"), plain_get(ds, "BitsStored"),
                   plain_get(ds, "PixelRepresentation"))

    def declared_bytes(self) -> int:
        parts = [_int(self.rows, 0), _int(self.columns, 0), _int(self.frames, 1), _int(self.samples, 1),
                 math.ceil(_int(self.allocated, 0) / 8)]
        if any(p < 0 for p in parts):
            return -1
        return math.prod(parts)


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return -1


def declared_bytes(ds: Dataset) -> int:
    """Bytes of the decoded pixel array the header declares (−1 when a value is not a number)."""
    return _PixelHeader.of(ds).declared_bytes()


def check_declared_size(ds: Dataset, what: str) -> None:
    """Refuse Pixel Data that is absent or whose declared decoded size is over the bound."""
    _checked_header(ds, what)


def _checked_header(ds: Dataset, what: str) -> _PixelHeader:
    """:func:`check_declared_size`, giving the header it read."""
    if "PixelData" not in ds:
        raise PixelDataError(f"{what} has no PixelData (7FE0,0010)", "PixelData")
    header = _PixelHeader.of(ds)
    size = header.declared_bytes()
    if size <= 0:
        raise PixelDataError(f"{what}: Rows, Columns, NumberOfFrames or BitsAllocated (0028,0010/0011/0008/"
                             "0100) is missing or not a positive number", "Rows")
    if size > MAX_DECODED_BYTES:
        raise PixelDataError(
            f"{what} declares {size / 2**30:.1f} GiB of pixels (Rows {header.rows} × Columns {header.columns} "
            f"× NumberOfFrames {header.frames or 1} × BitsAllocated {header.allocated}); at most "
            f"{MAX_DECODED_BYTES / 2**30:.0f} GiB per instance is decoded", "NumberOfFrames")
    return header


def no_decoder_error(ds: Dataset, what: str, exc: Exception) -> PixelDataError:
    """The error for a transfer syntax no installed pixel handler decodes."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    name = getattr(syntax, "name", None) or str(syntax or "unknown")
    return PixelDataError(f"{what}: no decoder here for its transfer syntax {name} ({syntax}, "
                          f"TransferSyntaxUID (0002,0010)): {exc}", "TransferSyntaxUID")


def without_unused_bits(values: np.ndarray, bits_stored: int) -> np.ndarray:
    """Integer ``values`` with the bits above ``bits_stored`` shifted out (PS3.5 8.1.1):
    sign-extended for a signed type, cleared for an unsigned one; ``values`` itself when
    ``bits_stored`` is not below the type's width (or not positive)."""
    shift = 8 * values.dtype.itemsize - bits_stored
    if values.dtype.kind not in "iu" or bits_stored <= 0 or shift <= 0:
        return values
    return np.asarray(np.right_shift(np.left_shift(values, shift), shift))


#: Transfer syntaxes whose Pixel Data are the stored values as little-endian integers, as is:
#: Implicit and Explicit VR Little Endian (PS3.5 A.1, A.2).
_NATIVE_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def _native_pixels(ds: Dataset, copy: bool = True, header: _PixelHeader | None = None,
                   masked: bool = True) -> np.ndarray | None:
    """The stored values of an uncompressed little-endian instance read straight from its bytes
    (what pydicom's decoder gives, without its per-call set-up: about a millisecond a CT slice, a
    quarter of a second a CT series), or None when anything is outside that plain case (another
    transfer syntax, colour, 1-bit, a length that does not match) and pydicom must decide.

    Unused high bits (Bits Stored < Bits Allocated) are shifted out as pydicom does (PS3.5 8.1.1):
    sign-extended for Pixel Representation 1, cleared for 0. ``copy=False``: a read-only view on
    the instance's bytes where nothing had to change (for a caller that copies the values anyway).
    ``header``: the instance's Image Pixel attributes when the caller has read them already.
    ``masked=False``: 1- and 2-byte values are left with their high bits as stored, for a caller
    that maps them through a table which does the shift (:func:`.resample.slice_density`).
    """
    meta = getattr(ds, "file_meta", None)
    syntax = plain_get(meta, "TransferSyntaxUID") if meta is not None else None
    if syntax is None or str(syntax) not in _NATIVE_LITTLE_ENDIAN:
        return None
    if header is None:
        header = _PixelHeader.of(ds)
    rows, cols, frames = _int(header.rows, 0), _int(header.columns, 0), _int(header.frames, 1)
    allocated, stored = _int(header.allocated, 0), _int(header.stored, 0)
    representation = _int(header.representation, -1)
    if (_int(header.samples, 1) != 1 or allocated not in (8, 16, 32) or not 0 < stored <= allocated
            or representation not in (0, 1) or min(rows, cols, frames) <= 0):
        return None
    data = plain_get(ds, "PixelData")
    expected = rows * cols * frames * allocated // 8
    if not isinstance(data, bytes) or len(data) not in (expected, expected + 1):  # + the even-length pad
        return None
    dtype = np.dtype(f"<{'i' if representation else 'u'}{allocated // 8}")
    values = np.frombuffer(data, dtype=dtype, count=rows * cols * frames)
    values = values.reshape((frames, rows, cols) if frames > 1 else (rows, cols))
    if stored < allocated and (masked or allocated > 16):
        values = without_unused_bits(values, stored)
    elif copy:
        values = values.copy()  # writable and independent of the instance, as pydicom's array is
    return values.astype(dtype.newbyteorder("="), copy=False)


def decoded_pixels(ds: Dataset, what: str, *, copy: bool = True, masked: bool = True) -> np.ndarray:
    """The stored values of ``ds`` (frames, rows, columns) or (rows, columns), decoded.
    ``copy=False`` may return a read-only view on the instance's Pixel Data (uncompressed);
    ``masked=False`` may leave 1- and 2-byte values' bits above Bits Stored as stored (see
    :func:`_native_pixels`)."""
    header = _checked_header(ds, what)
    native = _native_pixels(ds, copy, header, masked)
    if native is not None:
        return native
    try:
        # pydicom.pixels.pixel_array, not Dataset.pixel_array: the dataset does not keep a cached
        # copy of the decoded array (which would double a CT held as its instances)
        return np.asarray(pixel_array(ds))
    except (NotImplementedError, RuntimeError) as exc:
        raise no_decoder_error(ds, what, exc) from exc
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError, OSError) as exc:
        raise PixelDataError(f"{what}: PixelData (7FE0,0010) cannot be decoded as its header declares "
                             f"(truncated or malformed): {exc}", "PixelData") from exc
