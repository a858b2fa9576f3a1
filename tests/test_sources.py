"""Read-ahead decoding: frames in order, errors after the frames before them, early stop ends the thread;
decoding into a pool of reused buffers gives the very pixels of plain decoding."""

import threading
import time

import cv2
import numpy as np
import pytest

from common import InputError
from maskwatch.sources import Frame, FramePool, FrameSource, PoolClosed, read_ahead
from maskwatch.synthetic import render_scene


def frames(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise InputError(f"cannot decode image {i}")
        yield Frame(i, i / 10, 1000 + i / 10, np.full((2, 2, 3), i, np.uint8))


def test_frames_arrive_in_order():
    assert [f.index for f in read_ahead(frames(50), depth=4)] == list(range(50))


def test_an_error_arrives_after_the_frames_read_before_it():
    seen = []
    with pytest.raises(InputError, match="image 7"):
        for frame in read_ahead(frames(20, fail_at=7), depth=3):
            seen.append(frame.index)
    assert seen == list(range(7))


def decoder_stops() -> bool:
    """Whether every decode thread ends within two seconds."""
    deadline = time.time() + 2
    while any(t.name == "decode" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.05)
    return not any(t.name == "decode" for t in threading.enumerate())


def test_closing_early_stops_the_decoder_thread():
    reader = read_ahead(frames(10_000), depth=2)
    assert next(reader).index == 0
    reader.close()
    assert decoder_stops()


deadlock_guard = pytest.mark.timeout(30)  # a decoder waiting forever for a buffer fails the test, not the whole run


class RecordingPool(FramePool):
    """A pool that remembers every buffer it allocated."""

    def __init__(self, size: int, shape: tuple[int, ...]) -> None:
        self.allocated: list[np.ndarray] = []
        super().__init__(size, shape, self._record)

    def _record(self, shape: tuple[int, ...]) -> np.ndarray:
        self.allocated.append(np.empty(shape, np.uint8))
        return self.allocated[-1]


def pooled_frames(source: FrameSource, pool: FramePool, depth: int = 2):
    """Each frame's index and a copy of its image, its buffer handed back at once (as the pipeline does per batch)."""
    for frame in read_ahead(source.frames(pool), depth, pool):
        assert any(frame.image is buffer for buffer in pool.allocated)
        yield frame.index, frame.image.copy()
        pool.release([frame.image])


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "scene.mp4"
    render_scene(path, frames=40)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(12):
        cv2.imwrite(str(path / f"{i:03d}.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return path


@deadlock_guard
def test_a_video_decodes_into_a_few_reused_buffers_with_the_pixels_of_plain_decoding(video):
    capture = cv2.VideoCapture(str(video))
    expected = []
    ok, image = capture.read()
    while ok:
        expected.append(image)
        ok, image = capture.read()
    source = FrameSource(video)
    pool = RecordingPool(4, (source.height, source.width, 3))
    decoded = list(pooled_frames(source, pool))
    assert [index for index, _ in decoded] == list(range(40)) and len(expected) == 40
    for (_, image), reference in zip(decoded, expected):
        np.testing.assert_array_equal(image, reference)
    assert len(pool.allocated) <= 4
    assert decoder_stops()


@deadlock_guard
def test_an_image_folder_decodes_into_a_few_reused_buffers(folder):
    source = FrameSource(folder)
    pool = RecordingPool(3, (24, 32, 3))
    decoded = list(pooled_frames(source, pool, depth=1))
    assert [index for index, _ in decoded] == list(range(12))
    for (_, image), path in zip(decoded, source.images):
        np.testing.assert_array_equal(image, cv2.imread(str(path)))
    assert len(pool.allocated) <= 3


@deadlock_guard
def test_an_error_mid_folder_arrives_after_the_pooled_frames_before_it(folder, tmp_path):
    for path in folder.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "005.png").write_bytes(b"not a png")
    source = FrameSource(tmp_path)
    pool = RecordingPool(2, (24, 32, 3))
    seen = []
    with pytest.raises(InputError, match="cannot decode image .*005.png"):
        for index, _ in pooled_frames(source, pool):
            seen.append(index)
    assert seen == list(range(5))
    assert decoder_stops()


@deadlock_guard
def test_closing_early_stops_a_decoder_waiting_for_a_free_buffer(video):
    source = FrameSource(video)
    pool = FramePool(2, (source.height, source.width, 3))
    reader = read_ahead(source.frames(pool), depth=8, pool=pool)
    assert next(reader).index == 0  # kept, never released: the decoder fills the other buffer, then waits
    time.sleep(0.2)
    reader.close()
    assert decoder_stops()
    with pytest.raises(PoolClosed):
        pool.acquire()


def test_buffers_that_are_not_the_pools_are_not_taken_back():
    pool = FramePool(1, (2, 2, 3))
    own = pool.acquire()
    pool.release([own])
    pool.release([np.empty((2, 2, 3), np.uint8), own.copy()])  # e.g. a frame OpenCV decoded into a new array
    assert pool.acquire() is own


def test_stopping_early_releases_the_source_in_the_decode_thread_before_returning():
    """A VideoCapture left for the interpreter's exit to destroy can abort the process ("terminate called ...")."""
    released = []

    def frames():
        try:
            for i in range(100):
                yield Frame(i, i / 10, 1000 + i / 10, np.zeros((2, 2, 3), np.uint8))
        finally:
            released.append(threading.current_thread().name)

    reader = read_ahead(frames(), 2)
    assert next(reader).index == 0
    reader.close()
    assert released == ["decode"]
