#!/usr/bin/env bash
# Services the test suite talks to, set up when missing: PostgreSQL on 127.0.0.1:5432, MQTT on 127.0.0.1:1883, and
# GStreamer's RTSP server for the live-camera tests (they start it themselves: tests/rtsp_server.py).
#
# Run by .ci/run (as root on a fresh Debian machine) before `make test`. Every step
# checks before it changes anything, so running it again is harmless; and it never
# fails CI: a service that cannot be set up is reported in one line, and its tests
# skip with a reason instead.
set -uo pipefail

PG_ROLE=root # role and database of the tests' default URL (MASKWATCH_TEST_PG_URL in tests/conftest.py)
PG_DB=test

pg_usable() {
    command -v psql >/dev/null 2>&1 &&
        [ "$(psql -h 127.0.0.1 -p 5432 -U "$PG_ROLE" -d "$PG_DB" -tAc \
            'SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user' 2>/dev/null)" = t ]
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

setup_postgresql() {
    pg_usable && return 0
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        echo "services: installing PostgreSQL (apt-get)"
        command -v apt-get >/dev/null 2>&1 || return 1
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || return 1
    fi
    local version hba
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    [ -d "/etc/postgresql/$version/main" ] || pg_createcluster "$version" main >/dev/null || return 1
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        # first match wins in pg_hba.conf: put trust for local TCP in front of Debian's scram-sha-256
        { printf '%s\n' "# maskwatch tests (.ci/services.sh)" "host all all 127.0.0.1/32 trust"; cat "$hba"; } >"$hba.new" &&
            cat "$hba.new" >"$hba" && rm -f "$hba.new" || return 1
    fi
    if pg_isready -q -h 127.0.0.1 -p 5432; then
        pg_ctlcluster "$version" main reload || return 1
    else
        pg_ctlcluster "$version" main start || return 1
    fi
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    [ "$(as_postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'")" = 1 ] ||
        as_postgres psql -qc "CREATE ROLE \"$PG_ROLE\" LOGIN CREATEDB" || return 1
    as_postgres psql -qc "ALTER ROLE \"$PG_ROLE\" LOGIN CREATEDB" || return 1 # tests create a database each
    [ "$(as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" = 1 ] ||
        as_postgres createdb -O "$PG_ROLE" "$PG_DB" || return 1
    pg_usable
}

if setup_postgresql; then
    echo "services: PostgreSQL ready on 127.0.0.1:5432 (role $PG_ROLE, database $PG_DB, trust)"
else
    echo "services: PostgreSQL on 127.0.0.1:5432 could not be set up; its tests will skip"
fi

# MQTT broker for tests/test_mqtt.py: Mosquitto on 127.0.0.1:1883, anonymous clients allowed.
mqtt_answers() { timeout 2 bash -c ': >/dev/tcp/127.0.0.1/1883' 2>/dev/null; }

mqtt_wait() {
    for _ in $(seq 10); do mqtt_answers && return 0; sleep 0.5; done
    return 1
}

setup_mosquitto() {
    mqtt_answers && return 0
    local mosquitto conf
    mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    if [ ! -x "$mosquitto" ]; then
        echo "services: installing Mosquitto (apt-get)"
        command -v apt-get >/dev/null 2>&1 || return 1
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null || return 1
    fi
    # Debian's service: with no listener configured, Mosquitto 2 serves anonymous clients on localhost only
    service mosquitto start >/dev/null 2>&1 && mqtt_wait && return 0
    # no init system (containers): run it ourselves with a minimal config
    conf="${TMPDIR:-/tmp}/maskwatch-mosquitto.conf"
    printf '%s\n' "listener 1883 127.0.0.1" "allow_anonymous true" >"$conf" || return 1
    "$mosquitto" -d -c "$conf" || return 1
    mqtt_wait
}

if setup_mosquitto; then
    echo "services: Mosquitto ready on 127.0.0.1:1883 (anonymous)"
else
    echo "services: no MQTT broker could be started on 127.0.0.1:1883; its tests will skip"
fi

# RTSP camera for tests/test_live.py: GStreamer's RTSP server (each test starts tests/rtsp_server.py itself).
RTSP_PYTHON=/usr/bin/python3 # the system Python: PyGObject comes from Debian, not from the venv
RTSP_PACKAGES="python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good"

rtsp_usable() { "$RTSP_PYTHON" "$(dirname "$0")/../tests/rtsp_server.py" --check >/dev/null 2>&1; }

setup_rtsp_server() {
    rtsp_usable && return 0
    echo "services: installing GStreamer's RTSP server (apt-get)"
    command -v apt-get >/dev/null 2>&1 || return 1
    # shellcheck disable=SC2086 # a list of packages
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $RTSP_PACKAGES >/dev/null || return 1
    rtsp_usable
}

if setup_rtsp_server; then
    echo "services: GStreamer RTSP server available ($RTSP_PYTHON tests/rtsp_server.py)"
else
    echo "services: GStreamer RTSP server could not be set up; the live-camera RTSP tests will skip"
fi

# Headless Chromium for tests/test_dashboard_browser.py: Debian's package, driven by Playwright's Python
# package through executable_path (never Playwright's own browser downloads).
CHROMIUM=/usr/bin/chromium

setup_chromium() {
    [ -x "$CHROMIUM" ] && return 0
    echo "services: installing Chromium (apt-get)"
    command -v apt-get >/dev/null 2>&1 || return 1
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || return 1
    [ -x "$CHROMIUM" ]
}

if setup_chromium; then
    echo "services: Chromium available ($CHROMIUM)"
else
    echo "services: Chromium could not be installed at $CHROMIUM; the dashboard browser test will skip"
fi
