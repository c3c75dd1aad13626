"""A BINARY SEG's segment box found on the packed frames all at once (rows of whole bytes), the same
box and pixels as the frame-by-frame walk: empty frames, frames of other segments, a segment on
two frames of one slice (read frame by frame, a later frame's pixels over an earlier one's) and
rows that are not whole bytes (frame by frame) included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.seg_frames import SegFrames, _box_by_frame, segment_box


def _frames(seed: int, slices: int, rows: int, columns: int, count: int, density: float) -> SegFrames:
    rng = np.random.default_rng(seed)
    grid = Grid((slices, rows, columns), np.eye(4), "1.2.3")
    bits = rng.random((count, rows, columns)) < density
    bits[rng.random(count) < 0.3] = False  # some empty frames
    packed = np.packbits(bits.reshape(-1), bitorder="little").tobytes()
    return SegFrames(grid, rng.integers(0, slices, count), rng.integers(1, 3, count), packed)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**16), slices=st.integers(1, 6), rows=st.integers(1, 9),
       columns=st.sampled_from([8, 16, 24, 12, 5]), count=st.integers(1, 10),
       density=st.sampled_from([0.02, 0.2, 0.7]))
def test_the_packed_segment_box_is_the_frame_by_frame_one(seed: int, slices: int, rows: int, columns: int,
                                                          count: int, density: float) -> None:
    frames = _frames(seed, slices, rows, columns, count, density)
    for number in (1, 2, 3):
        got = segment_box(frames, number)
        want = _box_by_frame(frames, number, frames.frames_of(number))
        if want is None:
            assert got is None
            continue
        assert got is not None and got.start == want.start
        assert got.mask.dtype == np.bool_
        np.testing.assert_array_equal(got.mask, want.mask)


def test_a_segment_on_two_frames_of_one_slice_is_read_frame_by_frame() -> None:
    """The later frame's pixels overwrite the earlier one's within the later one's own box only."""
    grid = Grid((1, 2, 8), np.eye(4), "1.2.3")
    first = np.array([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]], dtype=bool)
    second = np.array([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 1]], dtype=bool)
    packed = np.packbits(np.stack([first, second]).reshape(-1), bitorder="little").tobytes()
    box = segment_box(SegFrames(grid, np.array([0, 0]), np.array([1, 1]), packed), 1)
    assert box is not None and box.start == (0, 0, 0)
    # the second frame's box (row 1, columns 2-7) is written over the first's pixels there
    np.testing.assert_array_equal(box.mask[0], [[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 1]])


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(1, 9), columns=st.sampled_from([8, 16, 24]),
       runs=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 6), st.sampled_from(["up", "down", "gap", "swap"])),
                     min_size=1, max_size=3),
       density=st.sampled_from([0.02, 0.2, 0.7]))
def test_segments_stored_as_usual_give_the_frame_by_frame_box(seed: int, rows: int, columns: int,
                                                              runs: list[tuple[int, int, str]], density: float) -> None:
    """Frames as a SEG usually stores them (segment after segment, each on slices in a row: its
    frames read as one view and its box taken whole), and in other orders (read gathered)."""
    rng = np.random.default_rng(seed)
    slices_of, numbers = [], []
    for number, (first, count, order) in enumerate(runs, start=1):
        run = list(range(first, first + count))
        if order == "down":
            run.reverse()
        elif order == "gap" and count > 1:
            run[-1] += 1
        elif order == "swap" and count > 3:  # first and last in place, two between swapped
            run[1], run[2] = run[2], run[1]
        slices_of += run
        numbers += [number] * count
    grid = Grid((max(slices_of) + 1, rows, columns), np.eye(4), "1.2.3")
    bits = rng.random((len(numbers), rows, columns)) < density
    bits[rng.random(len(numbers)) < 0.2] = False  # some empty frames (a run with a hole)
    packed = np.packbits(bits.reshape(-1), bitorder="little").tobytes()
    frames = SegFrames(grid, np.array(slices_of), np.array(numbers), packed)
    for number in range(1, len(runs) + 1):
        got = segment_box(frames, number)
        want = _box_by_frame(frames, number, frames.frames_of(number))
        if want is None:
            assert got is None
            continue
        assert got is not None and got.start == want.start and got.mask.dtype == np.bool_
        np.testing.assert_array_equal(got.mask, want.mask)
