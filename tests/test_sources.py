"""Read-ahead decoding: frames in order, errors after the frames before them, early stop ends the thread."""

import threading
import time

import numpy as np
import pytest

from maskwatch.sources import Frame, read_ahead
from segmenter.errors import InputError


def frames(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise InputError(f"cannot decode image {i}")
        yield Frame(i, i / 10, np.full((2, 2, 3), i, np.uint8))


def test_frames_arrive_in_order():
    assert [f.index for f in read_ahead(frames(50), depth=4)] == list(range(50))


def test_an_error_arrives_after_the_frames_read_before_it():
    seen = []
    with pytest.raises(InputError, match="image 7"):
        for frame in read_ahead(frames(20, fail_at=7), depth=3):
            seen.append(frame.index)
    assert seen == list(range(7))


def test_closing_early_stops_the_decoder_thread():
    reader = read_ahead(frames(10_000), depth=2)
    assert next(reader).index == 0
    reader.close()
    deadline = time.time() + 2
    while any(t.name == "decode" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "decode" for t in threading.enumerate())
