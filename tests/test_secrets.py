"""Secrets never leave memory: no password, token or header value in the store, summary.json, live files or stderr."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from common import redact, redact_url
from maskwatch.synthetic import render_scene
from storage.engine import make_engine
from storage.schema import runs
from tests.test_serve import free_port, wait_for

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"secret-webhook-key-0123456789abc").decode()
SECRETS = {  # every one must stay out of everything written or printed
    "camera": "CamPw-51", "store": "PgPw-52", "header": "HdrTok-53", "api_key": "HdrKey-54", "mqtt": "MqttPw-55",
    "query": "HookTok-56", "hash": "HashVal-57", "webhook": WEBHOOK_SECRET,
}


@pytest.mark.parametrize(("text", "shown"), [
    ("rtsp//viewer:pw@host/x", "rtsp//viewer:***@host/x"),  # the scheme's colon forgotten
    ("viewer:pw@10.0.0.5/x", "viewer:***@10.0.0.5/x"),  # no scheme at all
    ("postgresql+psycopg://u:p@ss@db/x", "postgresql+psycopg://u:***@db/x"),
    ("https://hooks.example/x?token=abc&camera=1", "https://hooks.example/x?token=***&camera=1"),
    ("host=db password=abc dbname=x", "host=db password=*** dbname=x"),
    ("headers {'authorization': 'Bearer abc.def'}", "headers {'authorization': 'Bearer ***'}"),
    ("12:30:45 camera gate: user@host /srv/a:b.mp4", "12:30:45 camera gate: user@host /srv/a:b.mp4"),  # nothing secret
])
def test_redact_text(text: str, shown: str) -> None:
    assert redact_url(text) == redact(text) == shown


def test_redact_structures_by_key_name() -> None:
    data = {"headers": {"Authorization": "Bearer abc", "X-Org": "acme"}, "mqtt": {"username": "bob", "password": "pw"},
            "users": {"ann": {"role": "viewer", "password_hash": "scrypt$x"}}, "api_key": "k", "client_secret": "s",
            "url": "rtsp://a:b@h/x", "token": None, "cameras": [{"source": "c:d@h"}], "fps": 10}
    assert redact(data) == {
        "headers": {"Authorization": "***", "X-Org": "***"}, "mqtt": {"username": "bob", "password": "***"},
        "users": {"ann": {"role": "viewer", "password_hash": "***"}}, "api_key": "***", "client_secret": "***",
        "url": "rtsp://a:***@h/x", "token": None, "cameras": [{"source": "c:***@h"}], "fps": 10,
    }


def _site(store: str, mqtt_port: int) -> dict:
    """A site config carrying every kind of secret, with a store URL that holds the store password."""
    return {
        "segmenter": {"name": "motion"},
        "store": {"url": store},
        "delivery": {"webhooks": [{"name": "ops", "url": f"https://ops.example/hook?token={SECRETS['query']}",
                                   "secret": WEBHOOK_SECRET,
                                   "headers": {"authorization": f"Bearer {SECRETS['header']}", "X-Api-Key": SECRETS["api_key"]}}]},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "username": "mw", "password": SECRETS["mqtt"]},
        "dashboard": {"auth": {"users": {"ann": {"role": "viewer", "password_hash": f"scrypt$16384$8$1$salt${SECRETS['hash']}"}}}},
        "alarms": [{"name": "any", "kinds": ["zone_enter"], "notify": ["ops", "mqtt"]}],
    }


def _with_password(url: str) -> str:
    """The test store's URL with a password in it (PostgreSQL: trust authentication ignores it; SQLite has none)."""
    return url.replace("://root@", f"://root:{SECRETS['store']}@") if url.startswith("postgresql") else url


def _assert_nothing_leaked(url: str, out: Path, *texts: str) -> list[dict]:
    """No secret in the files under ``out``, the runs table or ``texts``; returns the stored configs."""
    with make_engine(url).connect() as conn:  # the runs table as the database returns it, source and config
        rows = [dict(r._mapping) for r in conn.execute(select(runs.c.source, runs.c.config_json))]
    blobs = {"runs": json.dumps(rows), **{f"text {i}": t for i, t in enumerate(texts)}}
    blobs |= {str(p): p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file()}  # SQLite, WAL included
    for name, secret in SECRETS.items():
        leaks = [where for where, blob in blobs.items() if secret in blob]
        assert not leaks, f"{name} secret in {leaks}"
    assert rows
    return [json.loads(r["config_json"]) for r in rows]


def test_run_stores_and_shows_no_secret(store_url, tmp_path):
    video = tmp_path / "belt.mp4"
    render_scene(video, frames=20)
    site = _site(_with_password(store_url), free_port())
    site["cameras"] = [{"name": "gate", "source": f"rtsp://viewer:{SECRETS['camera']}@10.0.0.12/stream1"}]
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "maskwatch", "run", str(video), "--config", str(tmp_path / "site.yaml"),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (out / "summary.json").is_file()
    (config,) = _assert_nothing_leaked(store_url, out, result.stdout, result.stderr)
    # the stored config is still the config, less its secrets
    assert config["cameras"][0]["source"] == "rtsp://viewer:***@10.0.0.12/stream1"
    assert config["delivery"]["webhooks"][0]["headers"] == {"authorization": "***", "X-Api-Key": "***"}
    assert config["mqtt"]["password"] == "***" and config["mqtt"]["username"] == "mw"
    assert config["segmenter"]["name"] == "motion"


def test_camera_worker_stores_and_logs_no_secret(store_url, tmp_path):
    video = tmp_path / "belt.mp4"
    render_scene(video, frames=20)
    site = _site(_with_password(store_url), free_port())
    dead = f"rtsp://viewer:{SECRETS['camera']}@127.0.0.1:{free_port()}/stream1"  # refused: its error is logged
    site["cameras"] = [{"name": "belt", "source": str(video), "loop": True},
                       {"name": "dead", "source": dead, "stall_s": 1, "backoff_max_s": 1}]
    site["service"] = {"listen": f"127.0.0.1:{free_port()}"}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "serve", "--config", str(tmp_path / "site.yaml"), "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def started() -> bool:  # a status file comes after its worker's run is stored, so after the store exists
            status = out / "live" / "dead.json"
            if not (status.is_file() and json.loads(status.read_text()).get("last_error")):
                return False
            with make_engine(store_url).connect() as conn:
                return len(conn.execute(select(runs.c.id)).all()) == 2

        wait_for(started, 120, "both camera workers to start and the dead camera to fail")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "viewer:***@127.0.0.1" in stderr  # the dead camera's error was logged, redacted
    configs = _assert_nothing_leaked(store_url, out, stdout, stderr)
    assert all(c["cameras"][1]["source"].startswith("rtsp://viewer:***@") for c in configs)
