"""Frame sources for ``maskwatch run``: a video file or a folder of images.

Every failure to open or decode becomes an :class:`InputError` naming the path,
so the CLI can report it in one line.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own stderr chatter; errors are ours to report

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segmenter.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Frame:
    index: int  # 0-based position in the source
    pts: float  # seconds from the start
    image: np.ndarray  # BGR uint8


class FrameSource:
    """Iterates frames of a video file or an image folder (sorted by name)."""

    def __init__(self, path: Path | str, fps: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"input not found: {self.path}")
        if self.path.is_dir():
            self.images = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.images:
                raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {self.path}")
            self.fps = fps or 10.0
            self.frame_count = len(self.images)
            first = self._read_image(self.images[0])
        else:
            self.images = []
            capture = self._open_video()
            ok, first = capture.read()
            if not ok or first is None:
                raise InputError(f"cannot decode any frame of {self.path}: not a video or corrupt")
            self.fps = fps or capture.get(cv2.CAP_PROP_FPS) or 25.0
            self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            capture.release()
        self.height, self.width = first.shape[:2]

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
        if self.images:
            for i, path in enumerate(self.images):
                image = self._read_image(path)
                if image.shape[:2] != (self.height, self.width):
                    raise InputError(f"image {path} is {image.shape[1]}x{image.shape[0]}, expected {self.width}x{self.height}")
                yield Frame(i, i / self.fps, image)
            return
        capture = self._open_video()
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield Frame(index, index / self.fps, image)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise InputError(f"cannot decode any frame of {self.path}")


_DONE = object()


def read_ahead(frames: Iterator[Frame], depth: int) -> Iterator[Frame]:
    """Decode on a thread of its own, up to ``depth`` frames ahead of the consumer.

    OpenCV releases the GIL while decoding, so the next frames are decoded while
    the current batch is segmented. Errors (a corrupt image mid-folder) reach the
    consumer in order, after the frames read before them. Closing the generator
    early stops the thread.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        buffer.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            buffer.put(exc)

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
