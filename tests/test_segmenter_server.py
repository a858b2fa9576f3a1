"""The shared segmenter of ``maskwatch serve``: frames of several cameras in one forward pass, over real sockets.

Everything is real: Unix sockets in a private folder, shared-memory frame
blocks, a Mask R-CNN (random weights, tiny input size) in the server, and for
the failure test a server process that is killed with SIGKILL and restarted.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from common import InputError
from maskwatch.config import SegmenterSection, parse_config
from maskwatch.segmenter_server import (
    RemoteSegmenter,
    SegmenterLink,
    SegmenterServer,
    SegmenterUnavailable,
    run_segmenter_process,
)
from segmenter.detections import Detections
from segmenter.maskrcnn import MaskRCNNConfig, MaskRCNNSegmenter
from segmenter.masks import CropMask, mask_iou

TINY = {"min_size": 96, "max_size": 128, "score_threshold": 0.0, "max_detections": 5}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # what device: auto picks, for the server and the local model
# fp16 autocast on CUDA: a frame batched with others gets scores and boxes a little off those of the same frame alone
SCORE_ATOL, BOX_ATOL = (5e-3, 1.0) if DEVICE == "cuda" else (1e-4, 0.05)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Random (not tied) weights, saved once so the server and the local reference load the same model."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("weights") / "random.pth"
    torch.save({"model": maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3).state_dict(),
                "class_names": ["pill", "bottle"], "version": "v1"}, path)
    return path


def frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (96, 128, 3), dtype=np.uint8)
    x, y = 10 + 8 * seed, 10 + 5 * seed
    image[y : y + 40, x : x + 30] = (40 + 30 * seed, 200, 60)
    return image


@pytest.fixture
def link(tmp_path) -> SegmenterLink:
    return SegmenterLink(str(tmp_path / "seg.sock"), timeout_s=60)


@contextlib.contextmanager
def serving(segmenter, link: SegmenterLink, batch_size: int, batch_wait_s: float):
    """A server answering in a thread of the test process, stopped afterwards."""
    server = SegmenterServer(segmenter, link, batch_size=batch_size, batch_wait_s=batch_wait_s)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [server.serve_round(0.05) for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(10)
        server.close()


@pytest.fixture
def server(weights, link):
    with serving(MaskRCNNSegmenter(MaskRCNNConfig(weights=str(weights), **TINY)), link, 4, 2.0) as server:
        yield server


def same_detections(remote, local) -> None:
    """The same detections, paired by box: on CUDA two nearly equal scores may come out in either order."""
    assert remote.image_size == local.image_size and len(remote) == len(local) == TINY["max_detections"]
    pairs = np.abs(remote.boxes[:, None] - local.boxes[None]).max(axis=2).argmin(axis=1)
    assert sorted(pairs.tolist()) == list(range(len(local))), pairs  # each remote detection has its own local one
    local = local[pairs]
    assert remote.class_names.tolist() == local.class_names.tolist()
    np.testing.assert_allclose(remote.scores, local.scores, atol=SCORE_ATOL)
    np.testing.assert_allclose(remote.boxes, local.boxes, atol=BOX_ATOL)
    assert min(mask_iou(a, b) for a, b in zip(remote.masks, local.masks)) > 0.95


def test_frames_of_several_cameras_go_through_one_forward_pass(server, link, weights):
    cameras = [RemoteSegmenter(link) for _ in range(3)]
    local = MaskRCNNSegmenter(MaskRCNNConfig(weights=str(weights), **TINY))
    try:
        for seed, camera in enumerate(cameras):  # one at a time: each is a batch of one
            same_detections(camera.segment([frame(seed)])[0], local.segment([frame(seed)])[0])
        assert dict(server.stats.sizes) == {1: 3}

        results: dict[int, object] = {}
        start = threading.Barrier(3)

        def send(seed: int) -> None:
            start.wait()
            results[seed] = cameras[seed].segment([frame(seed)])[0]

        threads = [threading.Thread(target=send, args=(seed,)) for seed in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert dict(server.stats.sizes) == {1: 3, 3: 1}  # all three cameras in one batch, each answered its own
        for seed in range(3):
            same_detections(results[seed], local.segment([frame(seed)])[0])
        assert server.stats.as_dict()["mean_batch"] == pytest.approx(6 / 4)

        bigger = np.zeros((120, 160, 3), np.uint8)  # the stream changed size: a new frame block, same connection
        assert cameras[0].segment([bigger])[0].image_size == (120, 160)
    finally:
        for camera in cameras:
            camera.close()


def start_server_process(weights: Path, link: SegmenterLink, status: Path) -> mp.Process:
    section = SegmenterSection(name="maskrcnn", maskrcnn=MaskRCNNConfig(weights=str(weights), **TINY))
    process = mp.get_context("spawn").Process(target=run_segmenter_process, args=(section, link, 4, 0.01, status))
    process.start()
    return process


def segment_when_up(camera: RemoteSegmenter, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return camera.segment([frame(1)])[0]
        except SegmenterUnavailable as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"shared segmenter did not come up: {exc}") from None
            time.sleep(0.2)


class BrightestPixel:
    """A stand-in model: one detection per frame, a one-pixel mask where the frame is brightest.

    Each camera draws its own pixel, so an answer routed to the wrong camera shows.
    """

    def __init__(self) -> None:
        self.batches: list[int] = []

    def segment(self, frames: list[np.ndarray]) -> list[Detections]:
        self.batches.append(len(frames))
        time.sleep(0.01)  # long enough for answers still being sent to overlap the next batch
        out = []
        for image in frames:
            y, x = np.unravel_index(int(image[..., 0].argmax()), image.shape[:2])
            out.append(Detections(np.array([[x, y, x + 1, y + 1]], np.float32), [CropMask(np.ones((1, 1), bool), int(x), int(y))],
                                  np.array([1]), np.array([1.0], np.float32), np.array(["dot"], object), image.shape[:2]))
        return out


def test_more_cameras_than_the_batch_each_get_their_own_answers(link):
    """Six cameras, batch 2: frames left over wait for the next batch while answers of the last go out."""
    model = BrightestPixel()
    cameras = [RemoteSegmenter(link) for _ in range(6)]
    wrong: list[str] = []

    def run(index: int) -> None:
        for step in range(20):
            image = np.zeros((48, 64, 3), np.uint8)
            y, x = index * 7, step * 3  # where this camera's brightest pixel is, on this frame
            image[y, x, 0] = 255
            (det,) = cameras[index].segment([image])
            if (det.masks[0].x0, det.masks[0].y0) != (x, y):
                wrong.append(f"camera {index} frame {step}: got {(det.masks[0].x0, det.masks[0].y0)}")

    threads = [threading.Thread(target=run, args=(index,)) for index in range(6)]
    with serving(model, link, batch_size=2, batch_wait_s=0.05) as server:
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not wrong, wrong[:5]
            assert sum(model.batches) == 120 and max(model.batches) == 2
            assert server.stats.frames == 120 and server.stats.as_dict()["mean_batch"] > 1.5  # mostly full batches
        finally:
            for camera in cameras:
                camera.close()


class WholeFrame:
    """A stand-in model answering every frame with one mask covering all of it: an answer bigger than a socket buffer."""

    def segment(self, frames: list[np.ndarray]) -> list[Detections]:
        return [Detections(np.array([[0, 0, f.shape[1], f.shape[0]]], np.float32), [CropMask(np.ones(f.shape[:2], bool), 0, 0)],
                           np.array([1]), np.array([1.0], np.float32), np.array(["all"], object), f.shape[:2]) for f in frames]


def test_a_camera_that_stops_reading_is_dropped_and_does_not_hold_up_the_others(link):
    server_link = SegmenterLink(link.address, timeout_s=1.0)  # the service's: how long an answer may wait to be read
    big = np.zeros((2000, 2000, 3), np.uint8)  # its answer, packed, is 500 kB: more than the socket takes unread
    hung = RemoteSegmenter(link)
    healthy = RemoteSegmenter(SegmenterLink(link.address, timeout_s=30))
    with serving(WholeFrame(), server_link, batch_size=2, batch_wait_s=0.01) as server:
        try:
            hung._connect().send((hung._frame_block(big.nbytes).name, big.shape))  # asks, then never reads
            while server.stats.frames < 1:
                time.sleep(0.01)
            started = time.monotonic()
            (det,) = healthy.segment([big])  # its answer queues behind the stuck one, which gives way after 1 s
            assert det.masks[0].area == 2000 * 2000 and time.monotonic() - started < 30  # not held up for good
            assert len(server.peers) == 1  # the stuck camera was dropped
        finally:
            hung.close()
            healthy.close()


def test_a_camera_skips_frames_while_the_segmenter_process_is_away_and_reconnects(weights, link, tmp_path):
    camera = RemoteSegmenter(link)
    status = tmp_path / "live" / "segmenter" / "status.json"
    with pytest.raises(SegmenterUnavailable, match="not reachable"):
        camera.segment([frame(0)])
    process = start_server_process(weights, link, status)
    try:
        first = segment_when_up(camera)
        process.kill()  # SIGKILL: no goodbye on the socket
        process.join(10)
        with pytest.raises(SegmenterUnavailable, match="connection lost|not reachable"):
            camera.segment([frame(1)])
        process = start_server_process(weights, link, status)  # a stale socket file is left: the new one replaces it
        again = segment_when_up(camera)  # the same camera object reconnects by itself
        same_detections(again, first)
        deadline = time.monotonic() + 60
        while (state := json.loads(status.read_text()) if status.exists() else {}).get("frames", 0) < 1:
            assert time.monotonic() < deadline, "no status from the segmenter process"
            time.sleep(0.2)
        assert state["pid"] == process.pid and state["device"] == DEVICE and state["batches"] >= 1

        # hung, not dead (SIGSTOP stands in for a stuck driver): cameras give up after timeout_s, connecting too
        quick = SegmenterLink(link.address, timeout_s=2.0)  # a few forward passes, even on a busy machine
        connected, connecting = RemoteSegmenter(quick), RemoteSegmenter(quick)
        segment_when_up(connected)
        os.kill(process.pid, signal.SIGSTOP)
        try:
            for waiting in (connected, connecting):
                started = time.monotonic()
                with pytest.raises(SegmenterUnavailable, match="did not answer within 2 s"):
                    waiting.segment([frame(2)])
                assert time.monotonic() - started < 30  # gave up, rather than waiting for good
        finally:
            os.kill(process.pid, signal.SIGCONT)
        same_detections(segment_when_up(connected), first)  # reconnected: the late answer is not taken for this frame
        connected.close()
        connecting.close()
        os.kill(process.pid, signal.SIGTERM)
        process.join(30)
        assert process.exitcode == 0 and not Path(link.address).exists()  # a clean stop removes its socket
    finally:
        camera.close()
        if process.is_alive():
            process.kill()


def test_shared_segmenter_is_chosen_for_maskrcnn_and_refused_for_stateful_backends():
    assert parse_config({}).service.shared_segmenter("maskrcnn")
    assert not parse_config({"segmenter": {"name": "motion"}}).service.shared_segmenter("motion")
    assert not parse_config({"service": {"segmenter": "per_camera"}}).service.shared_segmenter("maskrcnn")
    with pytest.raises(InputError, match="service.segmenter: shared needs the maskrcnn segmenter"):
        parse_config({"segmenter": {"name": "motion"}, "service": {"segmenter": "shared"}})
