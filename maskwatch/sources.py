"""Frame sources for ``maskwatch run``: a video file or a folder of images, each frame with its timestamp.

A video's frames carry their own presentation time (pts), so a variable frame
rate or a stream with gaps gives true durations. An image folder has no clock:
its rate comes from ``--fps``, else a MOTChallenge ``seqinfo.ini`` beside it,
else :data:`DEFAULT_FOLDER_FPS` (the summary says which). Every failure to open or decode becomes an :class:`InputError` naming the path,
so the CLI can report it in one line.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own stderr chatter; errors are ours to report

import configparser
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_FOLDER_FPS = 10.0


@dataclass
class Frame:
    index: int  # 0-based position in the source
    pts: float  # seconds from the start
    ts: float  # wall-clock epoch seconds: the run's start plus pts
    image: np.ndarray | None  # BGR uint8; None when only masks are replayed


def sidecar_fps(folder: Path) -> float | None:
    """``frameRate`` of a MOTChallenge ``seqinfo.ini`` in the image folder or its parent, if there is one."""
    for path in (folder / "seqinfo.ini", folder.parent / "seqinfo.ini"):
        if path.is_file():
            parser = configparser.ConfigParser()
            try:
                parser.read(path)
                rate = parser.getfloat("Sequence", "frameRate")
            except (configparser.Error, ValueError):
                raise InputError(f"{path}: no valid [Sequence] frameRate") from None
            if rate > 0:
                return rate
    return None


def replay_frames(count: int, fps: float, start_ts: float) -> Iterator[Frame]:
    """Frames without images, ``1/fps`` s apart: the clock for masks replayed without their video."""
    for index in range(count):
        yield Frame(index, index / fps, start_ts + index / fps, None)


class FrameSource:
    """Iterates frames of a video file or an image folder (sorted by name)."""

    def __init__(self, path: Path | str, fps: float | None = None) -> None:
        """``fps`` sets an image folder's rate (a video's frames keep their own timestamps)."""
        self.path = Path(path)
        self.start_ts = time.time()
        if not self.path.exists():
            raise InputError(f"input not found: {self.path}")
        if self.path.is_dir():
            self.images = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.images:
                raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {self.path}")
            sidecar = None if fps else sidecar_fps(self.path)
            self.fps = fps or sidecar or DEFAULT_FOLDER_FPS
            self.fps_from = "--fps" if fps else "seqinfo.ini" if sidecar else "default"
            self.frame_count = len(self.images)
            first = self._read_image(self.images[0])
        else:
            self.images = []
            capture = self._open_video()
            ok, first = capture.read()
            if not ok or first is None:
                raise InputError(f"cannot decode any frame of {self.path}: not a video or corrupt")
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0  # nominal: only for the annotated video's header
            self.fps_from = "video"
            self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            capture.release()
        self.height, self.width = first.shape[:2]

    @property
    def first_number(self) -> int:
        """How the source numbers its first frame: an image folder's first name when numeric, else 1 (as MOTS20)."""
        return int(self.images[0].stem) if self.images and self.images[0].stem.isdigit() else 1

    def _open_video(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise InputError(f"cannot open {self.path}: not a readable video or image folder")
        return capture

    def _read_image(self, path: Path) -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"cannot decode image {path}")
        return image

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, pool: FramePool | None = None) -> Iterator[Frame]:
        """The frames in order; with a ``pool``, each is decoded into one of its buffers.

        The consumer hands a pooled frame's image back with :meth:`FramePool.release`
        once it no longer needs it.
        """
        if self.images:
            for i, path in enumerate(self.images):
                image = self._read_image(path)
                if image.shape[:2] != (self.height, self.width):
                    raise InputError(f"image {path} is {image.shape[1]}x{image.shape[0]}, expected {self.width}x{self.height}")
                yield Frame(i, i / self.fps, self.start_ts + i / self.fps, image if pool is None else pool.copy(image))
            return
        capture = self._open_video()
        try:
            index, previous = 0, -1.0
            while True:
                buffer = pool.acquire() if pool is not None else None
                ok, image = capture.read(buffer)  # into the buffer when its shape fits, else into a new array
                if pool is not None and not (ok and image is buffer):
                    pool.release([buffer])  # not handed out: the end of the video, or a frame of another size
                if not ok:
                    break
                pts = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if not pts > previous:  # a container without timestamps, or a broken one: the nominal rate
                    pts = previous + 1.0 / self.fps
                previous = pts
                yield Frame(index, pts, self.start_ts + pts, image)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise InputError(f"cannot decode any frame of {self.path}")


class PoolClosed(Exception):
    """Raised in a decoder waiting for a buffer of a pool whose consumer has stopped."""


class FramePool:
    """A bounded set of reusable frame buffers: the decoder takes them, the consumer gives them back.

    Decoding into buffers that already exist saves allocating (and page-faulting
    in) a new array for every frame; when the segmenter allocates them
    (``allocate``: Mask R-CNN on CUDA gives pinned memory), its upload to the GPU
    needs no staging copy either. The decoder waits while all ``size`` buffers are
    in use, so the pool bounds memory however far ahead decoding runs; buffers are
    allocated on first need, so a short clip never allocates them all.
    """

    def __init__(
        self, size: int, shape: tuple[int, ...], allocate: Callable[[tuple[int, ...]], np.ndarray] | None = None
    ) -> None:
        self.size, self.shape = size, shape
        self._allocate = allocate or (lambda shape: np.empty(shape, np.uint8))
        self._owned: dict[int, np.ndarray] = {}  # by id(); holding them keeps the ids unique
        self._free: list[np.ndarray] = []
        self._closed = False
        self._changed = threading.Condition()

    def acquire(self) -> np.ndarray:
        """A free buffer; waits while all are in use. :class:`PoolClosed` once :meth:`close` was called."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._free or len(self._owned) < self.size)
            if self._closed:
                raise PoolClosed
            if self._free:
                return self._free.pop()
            buffer = self._allocate(self.shape)
            self._owned[id(buffer)] = buffer
            return buffer

    def copy(self, image: np.ndarray) -> np.ndarray:
        """``image`` copied into a free buffer (for decoders that cannot write into one)."""
        buffer = self.acquire()
        np.copyto(buffer, image)
        return buffer

    def release(self, images: Iterable[np.ndarray]) -> None:
        """Hand buffers back for reuse; arrays not from this pool (a frame OpenCV had to reallocate) are ignored."""
        with self._changed:
            self._free.extend(image for image in images if self._owned.get(id(image)) is image)
            self._changed.notify_all()

    def close(self) -> None:
        """Wake and stop a decoder waiting for a buffer: nobody will release one any more."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


_DONE = object()


def read_ahead(frames: Iterator[Frame], depth: int, pool: FramePool | None = None) -> Iterator[Frame]:
    """Decode on a thread of its own, up to ``depth`` frames ahead of the consumer.

    OpenCV releases the GIL while decoding, so the next frames are decoded while
    the current batch is segmented. Errors (a corrupt image mid-folder) reach the
    consumer in order, after the frames read before them. Closing the generator
    early stops the thread, also when it waits for a free buffer of ``pool`` (the
    pool ``frames`` decodes into, therefore closed with it), and waits until the
    thread has released the source.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def offer(item: object) -> None:
        """Queue ``item`` unless the consumer stops first (then nobody would ever take it)."""
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for frame in frames:
                offer(frame)
                if stop.is_set():
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            offer(exc)
        finally:  # release the decoder here and now: a VideoCapture left to the interpreter's exit can abort it
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="decode", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        if pool is not None:
            pool.close()
        thread.join()  # within a frame's decode: it checks ``stop`` between frames, and a closed pool wakes it
