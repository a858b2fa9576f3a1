"""A tiny RTSP camera on loopback for tests/test_live.py: GStreamer's RTSP server, a live test pattern.

Run with the *system* Python (it needs PyGObject and Debian's GStreamer packages,
which the venv does not have); .ci/services.sh installs them. Prints ``READY`` on
stdout once it listens, so a test can wait for it, and serves until SIGTERM/SIGINT.
With --user/--password clients must authenticate (Basic), like a real camera.
``--check`` only verifies that everything needed is installed (exit 0) or names what
is missing (exit 1), for .ci/services.sh and the tests' skip reason.

Usage: /usr/bin/python3 tests/rtsp_server.py --port 8554 [--path /cam] [--width 320 --height 240 --fps 25]
       /usr/bin/python3 tests/rtsp_server.py --check
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ELEMENTS = ("videotestsrc", "jpegenc", "rtpjpegpay")  # plugins-base, plugins-good


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    Gst.init(None)
    missing = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        print(f"GStreamer elements missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.check:
        return 0
    factory = GstRtspServer.RTSPMediaFactory()
    # MJPEG over RTP: in every GStreamer install (plugins-good) and every FFmpeg build
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={args.width},height={args.height},"
        f"framerate={args.fps}/1 ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)  # one pipeline for all clients, as a camera has

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camera-user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        factory.add_role_from_structure(
            Gst.Structure.from_string(
                "camera-user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
        )
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
