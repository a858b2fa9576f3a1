"""LiveSource against a real RTSP camera on loopback (GStreamer's RTSP server), real files and dead ports.

The server (tests/rtsp_server.py, run by the system Python) is killed, frozen and
restarted under the source, as a camera would be; nothing is mocked. Tests that
need it skip, naming the packages, when GStreamer's RTSP server is not installed
(.ci/services.sh installs it on Debian).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from common import InputError, redact_url
from maskwatch.live import LiveFrame, LiveSource

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # PyGObject and GStreamer come from Debian, not from the venv
PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
USER, PASSWORD = "alice", "s3cr@t:Pw9"  # "@" and ":" inside, as real passwords have
FPS = 25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def read_for(source: LiveSource, seconds: float) -> list[LiveFrame]:
    """Everything a fast consumer gets in ``seconds``."""
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = source.read(timeout=0.1)
        if frame is not None:
            frames.append(frame)
    return frames


class RtspCamera:
    """tests/rtsp_server.py on a fixed loopback port: started, killed, frozen and restarted by the tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, user: str = USER, password: str = PASSWORD) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}/cam"

    def start(self, width: int = 320, height: int = 240) -> None:
        command = [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--width", str(width), "--height", str(height)]
        command += ["--fps", str(FPS), "--user", USER, "--password", PASSWORD]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE)  # its stderr: in the test's output
        ready, _, _ = select.select([self.process.stdout], [], [], 10)
        if not ready or self.process.stdout.readline().strip() != b"READY":
            self.kill()
            pytest.fail("RTSP test server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process.stdout.close()
            self.process = None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)


@pytest.fixture(scope="session")
def gstreamer() -> None:
    """Skips, naming the Debian packages, when the RTSP test server cannot run here."""
    try:
        check = subprocess.run([SYSTEM_PYTHON, str(SERVER), "--check"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        pytest.skip(f"RTSP test server needs {SYSTEM_PYTHON} ({exc}); Debian packages: {PACKAGES}")
    if check.returncode != 0:
        reason = (check.stderr.strip().splitlines() or ["unknown error"])[-1]
        pytest.skip(f"GStreamer RTSP server not usable ({reason}); install {PACKAGES} (.ci/services.sh does)")


@pytest.fixture
def camera(gstreamer: None) -> Iterator[RtspCamera]:
    cam = RtspCamera()
    cam.start()
    yield cam
    cam.kill()


@pytest.fixture
def sources() -> Iterator[Callable[..., LiveSource]]:
    """Makes started LiveSources and stops them all at the end, whatever the test did."""
    made: list[LiveSource] = []

    def make(source: str | int, **options: float | bool) -> LiveSource:
        made.append(LiveSource(source, **options).start())
        return made[-1]

    yield make
    for source in made:
        source.stop()


def udp_sockets() -> int:
    """UDP sockets this process holds: RTSP over UDP opens an RTP and an RTCP port per stream, over TCP none."""
    in_namespace = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        in_namespace |= {line.split()[9] for line in Path(table).read_text().splitlines()[1:]}
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            ours.add(target.removeprefix("socket:[").removesuffix("]"))
    return len(ours & in_namespace)


def first_frame(source: LiveSource, timeout: float = 10.0) -> LiveFrame:
    frame = source.read(timeout=timeout)
    assert frame is not None, f"no frame within {timeout} s: {source.state()}"
    return frame


# -- redaction (no server) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://user:pass@host/x", "rtsp://user:***@host/x"),
        ("rtsps://admin:p@ss:w0rd@10.0.0.5:322/Streaming/101", "rtsps://admin:***@10.0.0.5:322/Streaming/101"),
        ("http://u:pw@cam.local:8080/video.mjpg", "http://u:***@cam.local:8080/video.mjpg"),
        ("https://u:pw@cam.local/snap?x=1", "https://u:***@cam.local/snap?x=1"),
        ("rtsp://:pw@host/x", "rtsp://:***@host/x"),
        ("rtsp://user@host/x", "rtsp://user@host/x"),  # no password to hide
        ("rtsp://host:554/x", "rtsp://host:554/x"),
        ("rtsp://host/x?user=a@b", "rtsp://host/x?user=a@b"),
        ("/videos/belt.mp4", "/videos/belt.mp4"),
        ("0", "0"),
        ("cannot open rtsp://u:pw@h/x: timeout", "cannot open rtsp://u:***@h/x: timeout"),
    ],
)
def test_redact_url_hides_passwords_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_bad_arguments_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        LiveSource(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="backoff_max_s"):
        LiveSource("rtsp://127.0.0.1:1/x", backoff_initial_s=2, backoff_max_s=1)


# -- against the RTSP camera -----------------------------------------------------------------------


def test_frames_arrive_in_order_and_are_counted(camera: RtspCamera, sources: Callable[..., LiveSource]) -> None:
    """Order, timestamps and counters; the rates themselves are measured in bench/soak.py, not asserted here."""
    source = sources(camera.url())
    first = first_frame(source)
    assert first.image.shape == (240, 320, 3) and first.image.dtype == np.uint8
    frames = read_for(source, 2.0)
    state = source.state()
    assert len(frames) >= 2 and state.frames_in > frames[-1].index >= frames[0].index
    assert state.fps_in > 0 and state.fps_out > 0
    assert state.connected and state.frame_size == (320, 240) and state.reconnects == 0 and state.last_error is None
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    assert all(b.pts > a.pts for a, b in zip(frames, frames[1:]))


def test_reconnects_when_the_camera_comes_back(
    camera: RtspCamera, sources: Callable[..., LiveSource], record_property: Callable[[str, object], None]
) -> None:
    source = sources(camera.url())
    first_frame(source)
    camera.kill()
    assert wait_until(lambda: not source.state().connected, 30), "the lost connection was not noticed"
    # the camera stays away: a failed attempt, then backoff
    assert wait_until(lambda: "cannot open" in (source.state().last_error or "") and source.state().backoff_s > 0, 30)

    camera.start()
    back = time.time()
    frame = source.read(timeout=30)
    while frame is not None and frame.ts < back:  # a frame read before the kill, not yet consumed
        frame = source.read(timeout=30)
    record_property("reconnect_s", round(time.time() - back, 2))  # a figure to look at; the bound is in the outage test
    assert frame is not None, "no frame after the camera returned"
    state = source.state()
    assert state.connected and state.reconnects == 1 and state.backoff_s == 0
    assert state.last_error  # kept, so an operator sees why it was down


def test_a_camera_back_after_a_long_outage_is_reopened_at_once(
    camera: RtspCamera, sources: Callable[..., LiveSource], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="maskwatch.live")
    source = sources(camera.url(), backoff_initial_s=1, backoff_max_s=8, jitter=0)
    first_frame(source)
    camera.kill()
    # full opens fail after waits of 1, 2 and 4 s; then the backoff is at its cap, and the camera is only probed
    assert wait_until(lambda: source.state().backoff_s == 8, 20), source.state()
    failed_opens = [r for r in caplog.records if r.getMessage().startswith("cannot open")]
    assert len(failed_opens) == 3, [r.getMessage() for r in failed_opens]

    camera.start()  # the next open of a plain backoff would come about 8 s from now
    back = time.time()
    frame = source.read(timeout=5)
    while frame is not None and frame.ts < back:
        frame = source.read(timeout=5)
    assert frame is not None, f"no frame within 5 s of the camera's return: {source.state()}"
    assert source.state().reconnects == 1
    assert [r for r in caplog.records if r.getMessage().startswith("cannot open")] == failed_opens  # no open wasted


def test_rtsp_transport_is_chosen_per_camera(camera: RtspCamera, sources: Callable[..., LiveSource]) -> None:
    options = os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"]
    before = udp_sockets()
    over_tcp = sources(camera.url())
    first_frame(over_tcp)
    assert udp_sockets() == before  # the default: RTP inside the RTSP connection
    over_udp = sources(camera.url(), rtsp_transport="udp")  # the same process, at the same time
    assert first_frame(over_udp).image.shape == (240, 320, 3)
    assert udp_sockets() >= before + 2  # its RTP and RTCP ports
    assert read_for(over_tcp, 0.5) and read_for(over_udp, 0.5)  # both keep delivering
    over_udp.stop()
    assert wait_until(lambda: udp_sockets() == before, 5)  # the UDP ports were the UDP camera's alone
    assert over_tcp.state().connected and over_tcp.state().reconnects == 0
    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == options  # set for each open only
    with pytest.raises(InputError, match="rtsp_transport"):
        LiveSource(camera.url(), rtsp_transport="http")


QUIET_RECONNECTS = """
import logging, sys, time
from maskwatch.live import LiveSource


class CountOpens(logging.Handler):
    opens = 0

    def emit(self, record):
        self.opens += record.getMessage().startswith("cannot open")


logging.basicConfig(format="%(levelname)s %(message)s")  # stderr: what an operator would see...
logging.root.handlers[0].setLevel(logging.WARNING)
counter = CountOpens()  # ...while every attempt is counted
logging.getLogger("maskwatch.live").addHandler(counter)
logging.getLogger("maskwatch.live").setLevel(logging.DEBUG)
source = LiveSource(sys.argv[1], backoff_initial_s=0.05, backoff_max_s=0.1).start()
deadline = time.monotonic() + 30
while counter.opens < 5 and time.monotonic() < deadline:
    time.sleep(0.05)
source.stop()
print(counter.opens)
"""


def test_failing_reconnects_write_one_log_line_and_no_opencv_warnings() -> None:
    url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(QUIET_RECONNECTS), url], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 5  # five failed opens...
    assert result.stderr.splitlines() == [f"WARNING cannot open {redact_url(url)}"]  # ...and one line about them


def test_frame_size_change_after_reconnect(camera: RtspCamera, sources: Callable[..., LiveSource]) -> None:
    source = sources(camera.url())
    assert first_frame(source).image.shape == (240, 320, 3)
    camera.kill()
    camera.start(width=640, height=480)
    assert wait_until(lambda: source.state().reconnects == 1 and source.frame_size == (640, 480), 8), source.state()
    frames = read_for(source, 0.5)
    assert frames and all(f.image.shape == (480, 640, 3) for f in frames)
    assert source.state().frame_size == (640, 480)


def test_dead_camera_backs_off_while_a_live_one_keeps_delivering(
    camera: RtspCamera, sources: Callable[..., LiveSource]
) -> None:
    live = sources(camera.url())
    first_frame(live)
    dead = sources(f"rtsp://127.0.0.1:{free_port()}/cam", backoff_initial_s=0.1, backoff_max_s=0.4, jitter=0.2)
    waits: list[float] = []
    deadline, got = time.monotonic() + 2.5, 0
    while time.monotonic() < deadline:
        got += live.read(timeout=0.1) is not None
        wait = dead.state().backoff_s
        if wait and (not waits or wait != waits[-1]):
            waits.append(wait)
    state = dead.state()
    assert not state.connected and state.frames_in == 0 and state.reconnects == 0
    assert state.last_error and state.last_error.startswith("cannot open rtsp://127.0.0.1:")
    assert len(waits) >= 4 and waits[1] > waits[0] and max(waits) <= 0.4  # grows, capped
    assert waits[-1] >= 0.4 * (1 - 0.2)  # reached the cap
    assert got >= 0.8 * 2.5 * FPS and live.state().connected  # the live one did not wait for the dead one


def test_slow_consumer_gets_fresh_frames_and_lag_does_not_grow(
    camera: RtspCamera, sources: Callable[..., LiveSource]
) -> None:
    source = sources(camera.url())
    first_frame(source)
    time.sleep(0.5)
    source.read(timeout=1)
    dropped_before = source.state().dropped
    frames, depths = [], []
    for _ in range(15):  # a consumer that takes 200 ms per frame (several of the camera's frame intervals)
        time.sleep(0.2)
        frame = source.read(timeout=10)
        assert frame is not None
        frames.append(frame)
        depths.append(source.state().queue_depth)
    state = source.state()
    assert max(depths) <= 1  # one slot, replaced by each newer frame: no queue can build up
    assert state.dropped > dropped_before
    assert any(b.index - a.index > 1 for a, b in zip(frames, frames[1:]))  # frames in between were skipped
    assert all(b.pts > a.pts for a, b in zip(frames, frames[1:]))


def test_credentials_are_never_shown(
    camera: RtspCamera,
    sources: Callable[..., LiveSource],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="maskwatch.live")
    good = sources(camera.url())
    wrong = sources(camera.url(password="wr0ng:pw@x"), backoff_initial_s=0.1, backoff_max_s=0.2)
    first_frame(good)  # the password in the URL does authenticate: the server requires it
    assert wait_until(lambda: wrong.state().last_error is not None, 5)
    camera.kill()  # errors and reconnect messages of the good one too
    assert wait_until(lambda: good.state().last_error is not None, 5)
    camera.start()
    assert wait_until(lambda: good.state().reconnects == 1, 8)
    # the counter goes up just before the message is logged, on the reader's thread
    assert wait_until(lambda: any("reconnected" in r.getMessage() for r in caplog.records), 5)

    shown = [good.state().source, str(good.state()), str(wrong.state()), repr(good), repr(wrong)]
    shown += [r.getMessage() for r in caplog.records] + [t.name for t in threading.enumerate()]
    assert good.state().source == f"rtsp://{USER}:***@127.0.0.1:{camera.port}/cam"
    assert "***" in good.state().last_error and "***" in wrong.state().last_error
    out, err = capfd.readouterr()
    for secret in (PASSWORD, "wr0ng", "s3cr"):
        assert not any(secret in text for text in shown + [out, err]), secret


def test_stall_is_detected_and_recovered(camera: RtspCamera, sources: Callable[..., LiveSource]) -> None:
    source = sources(camera.url(), stall_s=1.0, open_timeout_s=1.0, backoff_initial_s=0.2, backoff_max_s=0.5)
    first_frame(source)
    camera.signal(signal.SIGSTOP)  # the connection stays open, nothing comes: a hung camera
    try:
        assert wait_until(lambda: not source.state().connected, 3)
        assert source.state().last_error.startswith("stalled: no frame from rtsp://alice:***@")
    finally:
        camera.signal(signal.SIGCONT)
    assert wait_until(lambda: source.state().reconnects >= 1 and source.state().connected, 8), source.state()
    assert first_frame(source, 3) is not None


# -- files and shutdown ----------------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """20 frames at 20 fps (1 s); frame i is filled with grey level 10 * i, so the order is visible."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path


def grey(frame: LiveFrame) -> int:
    return round(float(frame.image.mean()) / 10)


def test_file_plays_at_its_native_rate_and_ends(clip: Path, sources: Callable[..., LiveSource]) -> None:
    start = time.monotonic()
    source = sources(str(clip))
    frames = read_for(source, 1.6)
    assert wait_until(lambda: source.state().ended, 1)
    span = frames[-1].pts - frames[0].pts
    assert [grey(f) for f in frames] == list(range(20))  # a fast consumer gets every frame, in order
    assert 0.8 < span < 1.2 and time.monotonic() - start > 0.9  # 19 intervals of 50 ms, not as fast as decoding
    assert source.read(timeout=5) is None and not source.state().connected


def test_file_loops(clip: Path, sources: Callable[..., LiveSource]) -> None:
    source = sources(str(clip), loop=True)
    frames = read_for(source, 2.5)
    greys = [grey(f) for f in frames]
    state = source.state()
    assert len(frames) >= 40
    assert greys[:20] == list(range(20)) and greys[20:40] == list(range(20))  # restarts at the first frame
    assert not state.ended and state.reconnects == 0 and state.last_error is None
    assert [f.index for f in frames] == list(range(len(frames)))  # the index keeps counting across loops
    intervals = [b.pts - a.pts for a, b in zip(frames, frames[1:])]
    assert intervals == pytest.approx([0.05] * len(intervals))  # the file's own clock, continued across the loop


def test_stop_is_prompt_during_a_long_backoff(sources: Callable[..., LiveSource]) -> None:
    source = sources(f"rtsp://127.0.0.1:{free_port()}/cam", backoff_initial_s=30, backoff_max_s=30, jitter=0)
    assert wait_until(lambda: source.state().backoff_s == 30, 5)
    start = time.monotonic()
    source.stop()
    assert time.monotonic() - start < 15  # well within the 30 s backoff it was waiting out
    assert not [t for t in threading.enumerate() if t.name == f"live:{source.state().source}"]
    assert source.read(timeout=5) is None  # returns at once after stop()


def test_soak_script_prints_rss_and_lag(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "0.05", "--report-s", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "RSS" in result.stdout and "lag" in result.stdout and "first minute" in result.stdout
