"""Counts, Sizes, Track explorer and Zones pages as operators complained about them, through AppTest on real runs.

One store holds three real runs of the demo video: the demo's own (``demo-belt``,
moved two hours back, so a pause lies between it and the next), a second run of
``demo-belt``, and a run of ``dock-cam`` calibrated in metres (the demo is in
millimetres), so one class is measured in two units. Charts are read from what
Streamlit sends the browser: the Vega-Lite spec and its Arrow dataset.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from streamlit.testing.v1 import AppTest
from test_dashboard import REPO, configure, copy_store, open_app, rows, run_demo, texts

from dashboard.counts import segments, with_gaps
from dashboard.sizes import display_units, nice_bins
from storage.geometry import GeometryError, load_geometry, polygon_problem, save_geometry, validate_geometry
from storage.store import rebuild_hourly_counts

BERLIN = "Europe/Berlin"
PAUSE_S = 7200  # the demo's own run is moved this far back: nothing ran in between


def run_video(demo: Path, db: Path, out: Path, **camera: object) -> None:
    """``maskwatch run`` of the demo video into ``db``, with ``camera`` settings over the demo's."""
    site = yaml.safe_load((demo / "site.yaml").read_text())
    site["camera"] |= camera
    site["store"] = {"url": f"sqlite:///{db}"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "site.yaml").write_text(yaml.safe_dump(site))
    done = subprocess.run([sys.executable, "-m", "maskwatch", "run", str(demo / "scene.mp4"), "--config",
                           str(out / "site.yaml"), "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of one real demo run (as in test_dashboard.py)."""
    return run_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def store(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the demo store, configured without auth (as in test_dashboard.py)."""
    db = copy_store(demo, tmp_path)
    configure(monkeypatch, tmp_path, db, demo / "snapshots")
    return db


@pytest.fixture(scope="module")
def sites(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three-run store described in the module docstring (read-only: tests that write copy it)."""
    root = tmp_path_factory.mktemp("sites")
    db = copy_store(demo, root)
    with sqlite3.connect(db) as conn:
        for table, columns in {"counts": ["ts"], "events": ["ts"], "observations": ["ts"], "alarms": ["ts"],
                               "tracks": ["first_ts", "last_ts"], "runs": ["started_ts", "ended_ts"]}.items():  # fmt: skip
            where = "id = 1" if table == "runs" else "run_id = 1"
            sets = ", ".join(f"{c} = {c} - {PAUSE_S}" for c in columns)
            conn.execute(f"UPDATE {table} SET {sets} WHERE {where}")
    run_video(demo, db, root / "second")
    run_video(demo, db, root / "dock", name="dock-cam", calibration={"px_per_m": 400.0})
    rebuild_hourly_counts(f"sqlite:///{db}")
    return db


@pytest.fixture
def berlin(sites: Path, demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The three-run store, shown in Berlin time."""
    configure(monkeypatch, tmp_path, sites, demo / "snapshots", timezone=BERLIN)
    return sites


def charts(at: AppTest) -> list[tuple[dict, pd.DataFrame]]:
    """Each chart on the page: its Vega-Lite spec and its data, as the browser gets them."""
    found = []
    for node in at.get("vega_lite_chart"):
        spec = json.loads(node.proto.spec)
        frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in node.proto.datasets]
        found.append((spec, frames[0] if frames else pd.DataFrame()))
    return found


def titles(spec: object) -> list[str]:
    """Every title in a spec (chart, axes, legends, tooltips)."""
    if isinstance(spec, dict):
        own = spec.get("title")
        found = [own] if isinstance(own, str) else [own.get("text", "")] if isinstance(own, dict) else []
        return found + [t for value in spec.values() for t in titles(value)]
    if isinstance(spec, list):
        return [t for value in spec for t in titles(value)]
    return []


def time_encodings(spec: dict) -> list[dict]:
    """The temporal encodings of a spec (axes and tooltips)."""
    encoding = spec.get("encoding", {})
    tips = encoding.get("tooltip", [])
    return [e for e in [*encoding.values(), *(tips if isinstance(tips, list) else [])] if isinstance(e, dict)
            and e.get("type") == "temporal"]  # fmt: skip


def time_tooltips(spec: dict) -> list[dict]:
    tips = spec.get("encoding", {}).get("tooltip", [])
    return [t for t in (tips if isinstance(tips, list) else [tips]) if t.get("title", "").startswith("time")]


def berlin_wall(ts: float) -> pd.Timestamp:
    """Epoch seconds as Berlin wall clock, labelled UTC: how a chart gets site times."""
    return pd.Timestamp(dt.datetime.fromtimestamp(ts, ZoneInfo(BERLIN)).replace(tzinfo=None), tz="UTC")


def select(at: AppTest, label: str):
    return next(s for s in at.selectbox if s.label == label)


# -- times -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["counts.py", "sizes.py", "tracks.py"])
def test_no_chart_or_table_says_utc_when_the_site_is_in_berlin(berlin: Path, page: str) -> None:
    at = open_app(page)
    assert not at.exception and not at.error
    found = charts(at)
    assert found
    for spec, data in found:
        assert not [t for t in titles(spec) if "UTC" in t], titles(spec)
        for encoding in time_encodings(spec):  # the x axis only: tooltips get text (see dashboard.charts)
            assert encoding is spec["encoding"]["x"] and encoding["title"].endswith(f"({BERLIN})")
            assert encoding["scale"]["type"] == "utc"
            axis = encoding["axis"]
            # Streamlit ignores a format given with formatType utc and shows a 12-hour clock: labels by utcFormat
            assert "formatType" not in axis and axis["labelExpr"].startswith("utcFormat(datum.value, '%H:%M")
            assert "%I" not in axis["labelExpr"] and "%L" not in axis["labelExpr"]  # 24 h, no .500 ticks
        for tip in time_tooltips(spec):
            assert tip["type"] == "nominal" and tip["title"] == f"time ({BERLIN})"
            shown = data[tip["field"]]
            expected = [f"{t:%Y-%m-%d %H:%M:%S}" for t in data.time]  # the chart's wall clock, as text
            assert list(shown) == expected
    if page != "sizes.py":
        assert any(time_encodings(spec) for spec, _ in found) and any(time_tooltips(spec) for spec, _ in found)
    assert "UTC" not in texts(at)


def test_counts_chart_times_are_berlin_wall_clock(berlin: Path) -> None:
    at = open_app("counts.py")
    select(at, "Camera").select("demo-belt").run()
    spec, data = charts(at)[0]
    [(first,)] = rows(berlin, "SELECT MIN(c.ts) FROM counts c JOIN cameras k ON k.id = c.camera_id WHERE k.name = 'demo-belt'")
    bucket = 60  # the 24-hour window over 2 h of data: 60 s buckets (widgets.bucket_for)
    assert data.time.min() == berlin_wall(first // bucket * bucket)


def test_track_explorer_times_are_berlin_and_ticks_are_whole_seconds(berlin: Path) -> None:
    at = open_app("tracks.py")
    spec, _ = charts(at)[0]
    axis = spec["encoding"]["x"]["axis"]
    assert axis["tickMinStep"] >= 1000 and axis["labelExpr"] == "utcFormat(datum.value, '%H:%M:%S')"
    events = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert f"time ({BERLIN})" in events.columns
    track = int(select(at, "Track").value)
    run = int(select(at, "Run").value)
    stored = [ts for (ts,) in rows(berlin, "SELECT ts FROM events WHERE run_id = ? AND track_id = ? ORDER BY ts", run, track)]
    assert list(events[f"time ({BERLIN})"]) == [dt.datetime.fromtimestamp(t, ZoneInfo(BERLIN)).strftime("%Y-%m-%d %H:%M:%S")
                                               for t in stored]  # fmt: skip


# -- track explorer ----------------------------------------------------------------------------------------------


def test_switching_camera_resets_the_track(berlin: Path) -> None:
    at = open_app("tracks.py")
    picker = select(at, "Track")
    other = picker.options[-1]
    assert other != picker.options[0]
    picker.select(int(other.split(" · ")[0])).run()
    assert f"**Track {other.split(' · ')[0]}**" in texts(at)
    select(at, "Camera").select("dock-cam").run()
    assert not at.exception
    picker = select(at, "Track")
    [(dock_run,)] = rows(berlin, "SELECT r.id FROM runs r JOIN cameras c ON c.id = r.camera_id WHERE c.name = 'dock-cam'")
    first = rows(berlin, "SELECT track_id FROM tracks WHERE run_id = ? ORDER BY frames_seen DESC, track_id LIMIT 1", dock_run)
    assert int(picker.value) == first[0][0] and picker.value != int(other.split(" · ")[0])
    assert f"**Track {first[0][0]}**" in texts(at)


def test_a_link_opens_its_track(berlin: Path) -> None:
    [(run_id, track_id, uid)] = rows(berlin, "SELECT t.run_id, t.track_id, t.track_uid FROM tracks t JOIN cameras c ON "
                                             "c.id = t.camera_id WHERE c.name = 'dock-cam' AND t.class_name = 'person'")  # fmt: skip
    at = open_app()
    at.query_params["camera"] = "dock-cam"
    at.query_params["track"] = uid
    at.switch_page("tracks.py").run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert select(at, "Camera").value == "dock-cam" and int(select(at, "Run").value) == run_id
    assert int(select(at, "Track").value) == track_id and f"uid `{uid}`" in texts(at)
    select(at, "Camera").select("demo-belt").run()  # the link opened once; the operator's own picks hold
    assert select(at, "Camera").value == "demo-belt" and not at.exception

    at = open_app()
    at.query_params["track"] = "no-such-track"
    at.query_params["camera"] = ["x", "demo-belt"]  # repeated: the last one counts
    at.switch_page("tracks.py").run()
    assert not at.exception and any("no-such-track" in w.value for w in at.warning)
    assert select(at, "Camera").value == "demo-belt"


# -- sizes -------------------------------------------------------------------------------------------------------


def test_size_histograms_are_contiguous_bars_one_unit_per_chart(berlin: Path) -> None:
    at = open_app("sizes.py")
    assert select(at, "Camera").value == "All cameras"
    assert {u for (u,) in rows(berlin, "SELECT DISTINCT unit FROM tracks WHERE length_median IS NOT NULL")} == {"mm", "m"}
    found = charts(at)
    per_class = dict(rows(berlin, "SELECT class_name, COUNT(*) FROM tracks WHERE length_median IS NOT NULL GROUP BY 1"))
    assert len(found) == len(per_class)  # bottle and person: each in one unit, not one chart per unit
    for spec, data in found:
        assert spec["mark"]["type"] == "bar" and spec["encoding"]["x2"]["field"] == "size_to"
        assert spec["encoding"]["y2"] == {"datum": 0}  # bars from zero, not floating dashes at their height
        [unit] = set(data.unit)
        assert unit == "mm" and spec["encoding"]["x"]["title"] == "median length (mm)"
        assert spec["encoding"]["x"]["axis"]["format"] == ",.3~r"  # 3 significant digits, not 1.000000
        assert (data.size_from.iloc[1:].to_numpy() == data.size_to.iloc[:-1].to_numpy()).all()  # contiguous
        assert np.allclose(data.size_to - data.size_from, data.size_to.iloc[0] - data.size_from.iloc[0])
        [name] = set(data.class_name)
        assert data.tracks.sum() == per_class[name]
        lengths = [v * (1000 if u == "m" else 1) for v, u in
                   rows(berlin, "SELECT length_median, unit FROM tracks WHERE class_name = ? AND length_median IS NOT NULL", name)]
        assert data.size_from.min() <= min(lengths) and max(lengths) < data.size_to.max()  # metres converted, not 0.4 "mm"
    percentiles = next(d.value for d in at.dataframe if "p50" in d.value.columns)
    assert set(percentiles.unit) == {"mm"} and dict(zip(percentiles.class_name, percentiles.tracks)) == per_class


def test_tracks_are_ranked_by_size_across_units(berlin: Path) -> None:
    at = open_app("sizes.py")
    table = at.dataframe(key="sizes-tracks").value
    assert set(table.unit) == {"mm", "m"}
    in_mm = [v * (1000 if u == "m" else 1) for v, u in zip(table.length_median, table.unit)]
    assert in_mm == sorted(in_mm, reverse=True)  # a 0.4 m bottle ranks with 400 mm ones, not below 1 mm
    assert f"first_seen ({BERLIN})" in table.columns


def test_size_helpers() -> None:
    assert nice_bins(0.0, 10.0) == (0.0, 0.5, 21)
    start, width, count = nice_bins(412.3, 412.3)
    assert start <= 412.3 < start + width * count and count > 1
    start, width, count = nice_bins(3.0, 977.0)
    assert width == 50 and start == 0 and start + width * count > 977.0
    ranges = pd.DataFrame({"class_name": ["bottle", "bottle", "person", "cup"], "unit": ["mm", "m", "m", "px"],
                           "tracks": [5, 2, 3, 4]})  # fmt: skip
    assert display_units(ranges) == {("bottle", "mm"): ("mm", 1.0), ("bottle", "m"): ("mm", 1000.0),
                                     ("person", "m"): ("m", 1.0), ("cup", "px"): ("px", 1.0)}  # fmt: skip


# -- counts ------------------------------------------------------------------------------------------------------


def test_counts_break_where_nothing_ran_and_legends_read_plainly(berlin: Path) -> None:
    at = open_app("counts.py")
    select(at, "Camera").select("demo-belt").run()
    spec, data = charts(at)[0]
    assert spec["encoding"]["color"]["title"] == "Class"
    assert not {"class_name", "zone_class", "line_dir"} & {t for s, _ in charts(at) for t in titles(s)}
    runs = rows(berlin, "SELECT MIN(c.ts), MAX(c.ts) FROM counts c JOIN cameras k ON k.id = c.camera_id "
                        "WHERE k.name = 'demo-belt' GROUP BY c.run_id ORDER BY 1")  # fmt: skip
    assert len(runs) == 2 and runs[1][0] - runs[0][1] > PAUSE_S - 60
    first_end, second_start = berlin_wall(runs[0][1] + 60), berlin_wall(runs[1][0] // 60 * 60)
    for name, series in data.groupby("series"):
        pause = series[(series.time > first_end) & (series.time < second_start)]
        assert len(pause) == 1 and pause.visible.isna().all(), (name, pause)  # one break, no value across the pause
        assert series.visible.notna().sum() >= 4  # both runs drawn
    assert spec["mark"]["type"] == "line"


def test_all_cameras_are_shown_apart_not_added(berlin: Path) -> None:
    at = open_app("counts.py")
    assert select(at, "Camera").value == "All cameras"
    spec, data = charts(at)[0]
    assert spec["encoding"]["color"]["title"] == "Camera · Class"
    assert {s.split(" · ")[0] for s in data.series} == {"demo-belt", "dock-cam"}
    totals = next(d.value for d in at.dataframe if "unique objects" in d.value.columns)
    expected = rows(berlin, "SELECT c.name, t.class_name, COUNT(*) FROM tracks t JOIN cameras c ON c.id = t.camera_id "
                            "GROUP BY 1, 2 ORDER BY 1, 2")  # fmt: skip
    assert [tuple(r) for r in totals[["camera", "class", "unique objects"]].itertuples(index=False)] == expected


def test_gap_helpers() -> None:
    assert segments(np.array([0.0, 1, 2, 4, 5, 60, 61]), 1) == [(0.0, 5.0), (60.0, 61.0)]  # one skipped bucket: no gap
    assert segments(np.array([0.0, 60, 7200]), 60) == [(0.0, 60.0), (7200.0, 7200.0)]  # few buckets: still a gap
    assert segments(np.array([0.0, 5, 10, 20]), 1, sample_s=5) == [(0.0, 20.0)]  # sampled every 5 s: no gap
    frame = pd.DataFrame({"time": pd.to_datetime([0, 60, 7200], unit="s", utc=True), "series": "bottle",
                          "visible": [2.0, 3.0, 1.0]})  # fmt: skip
    out = with_gaps(frame, "visible", np.array([0.0, 60, 120, 7200]), 60)
    assert list((out.time - pd.Timestamp(0, tz="UTC")).dt.total_seconds()) == [0, 60, 120, 180, 3690, 7200, 7260]
    assert out.visible.tolist()[:4] == [2.0, 3.0, 0.0, 0.0] and np.isnan(out.visible[4]) and out.visible.tolist()[5:] == [1.0, 1.0]


# -- zones -------------------------------------------------------------------------------------------------------


BOWTIE = [[100.0, 100.0], [300.0, 300.0], [300.0, 100.0], [100.0, 300.0]]


def _draft(at: AppTest, name: str, points: list[list[float]]) -> None:
    at.selectbox(key="zones-item").select("new polygon zone").run()
    next(t for t in at.text_input if t.label == "Name").input(name).run()
    at.session_state[at.data_editor[0].key] = {"edited_rows": {}, "deleted_rows": [],
                                               "added_rows": [{"x": x, "y": y} for x, y in points]}  # fmt: skip
    at.run()


def test_a_crossing_zone_is_refused_in_plain_words_and_nothing_is_saved(store: Path) -> None:
    at = open_app("zones.py")
    assert "Background: a clean frame of scene.mp4" in texts(at)  # not the service's annotated frame
    _draft(at, "bow", BOWTIE)
    at.button(key="zones-save").click().run()
    assert [e.value for e in at.error] == ["“bow” was not saved. The zone's edges cross each other; move a point."]
    assert load_geometry(f"sqlite:///{store}", "demo-belt") is None


def test_a_refused_drafts_points_do_not_come_back_in_the_next_new_zone(store: Path) -> None:
    at = open_app("zones.py")
    _draft(at, "bow", BOWTIE)
    at.button(key="zones-save").click().run()
    assert at.error and "4 points" in texts(at)
    at.selectbox(key="zones-item").select("zone: crossing").run()
    at.selectbox(key="zones-item").select("new polygon zone").run()
    assert "0 points" in texts(at) and not at.error
    assert next(t for t in at.text_input if t.label == "Name").value == ""
    _draft(at, "dock", [[10.0, 20.0], [200.0, 20.0], [200.0, 120.0]])
    at.button(key="zones-save").click().run()
    assert not at.error, [e.value for e in at.error]
    zones = {z["name"]: z["polygon"] for z in load_geometry(f"sqlite:///{store}", "demo-belt")[0]["zones"]}
    assert zones["dock"] == [[10.0, 20.0], [200.0, 20.0], [200.0, 120.0]] and "bow" not in zones
    at.selectbox(key="zones-item").select("new polygon zone").run()  # after a save, too, the next draft is empty
    assert "0 points" in texts(at)


# -- geometry validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("points", "why"), [
    ([[0, 0], [10, 0]], "A zone needs at least 3 points."),
    ([[0, 0], [10, 10], [10, 0], [0, 10]], "The zone's edges cross each other; move a point."),  # a bow tie
    ([[0, 0], [10, 0], [10, 10], [5, 0], [0, 10]], "The zone's edges cross each other; move a point."),  # touches an edge
    ([[0, 0], [10, 0], [5, 0], [5, 5]], "The zone's edges cross each other; move a point."),  # folds back on itself
    ([[0, 0], [5, 0], [10, 0]], "The zone's points lie on one line, so it has no area; move a point."),
    ([[0, 0], [10, 0], [10, 0], [0, 10]], "Two neighbouring points of the zone are in the same place; remove one."),
    ([[0, 0], [10, 0], [10, 10]], None),
    ([[0, 0], [10, 0], [10, 10], [5, 3], [0, 10]], None),  # concave is fine
])  # fmt: skip
def test_polygon_problems(points: list, why: str | None) -> None:
    assert polygon_problem(points) == why


def test_geometry_validation_refuses_crossing_zones_for_every_writer(store_url: str) -> None:
    line = {"name": "door", "points": [[0, 5], [10, 5]]}
    with pytest.raises(GeometryError, match=r"zones\.1\.polygon: The zone's edges cross each other") as refused:
        save_geometry(store_url, "gate", [{"name": "ok", "polygon": [[0, 0], [9, 0], [9, 9]]},
                                          {"name": "bow", "polygon": BOWTIE}], [], [line], "olivia")  # fmt: skip
    [problem] = refused.value.problems
    assert (problem.key, problem.item, problem.sentence) == ("zones.1.polygon", "bow",
                                                             "The zone's edges cross each other; move a point.")  # fmt: skip
    assert isinstance(refused.value, ValueError) and load_geometry(store_url, "gate") is None
    with pytest.raises(GeometryError) as short:
        validate_geometry("gate", [{"name": "half", "polygon": [[1, 2]]}], [], [])
    assert [p.sentence for p in short.value.problems] == ["A zone needs at least 3 points."]  # once, not also pydantic's
    with pytest.raises(GeometryError) as twice:
        validate_geometry("gate", [{"name": "a", "circle": [5, 5, 2]}, {"name": "a", "circle": [9, 9, 2]}], [], [])
    assert [p.sentence for p in twice.value.problems] == ["Zone names must be unique: a."]
    assert validate_geometry("gate", [{"name": "ok", "polygon": [[0, 0], [9, 0], [9, 9]]}], [], [line])["zones"][0]["name"] == "ok"
