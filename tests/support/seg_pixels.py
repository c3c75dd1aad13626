"""The pixel array highdicom's ``Segmentation`` takes for a SEG of one mask per segment."""

from __future__ import annotations

import numpy as np

__all__ = ["seg_pixel_array"]


def seg_pixel_array(arrays: list[np.ndarray], seg_type: str) -> np.ndarray:
    """LABELMAP: one 8-bit volume, segment n where its array is set (later segments over earlier
    ones); FRACTIONAL: the arrays stacked as float32; BINARY: stacked as 0/1 bytes."""
    if seg_type == "LABELMAP":
        pixels = np.zeros(arrays[0].shape, dtype=np.uint8)
        for n, a in enumerate(arrays, start=1):
            pixels[a.astype(bool)] = n
        return pixels
    if seg_type == "FRACTIONAL":
        return np.stack(arrays, axis=-1).astype(np.float32)
    return np.stack(arrays, axis=-1).astype(np.uint8)
