"""Zones page: draw and edit a camera's zones, dynamic zones and lines; operators save them to the store.

Geometry starts from what was last saved here (:mod:`storage.geometry`),
else from the camera's latest run config. One item is edited at a time:
click the frame to add vertices (a polygon's next point, a circle's centre, a
line's next end), or type them in the table; the preview redraws as you go.
Saving validates the whole geometry (:func:`storage.geometry.validate_geometry`:
analytics' own models, and a zone's outline must not cross itself); a refusal
is shown in plain words, and the running service picks a saved geometry up
without a restart. Each visit to a "new …" entry is a fresh draft: points of a
draft that was refused and left behind never turn up in the next new item.
"""

from __future__ import annotations

from typing import Any

import cv2
import pandas as pd
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from dashboard import queries
from dashboard.drawing import camera_background, draw_geometry, draw_points
from dashboard.settings import Settings, User
from dashboard.widgets import context, fmt_ts, pick_cameras
from storage.geometry import GeometryError, save_geometry

KINDS = {"zone": "zones", "line": "lines", "dynamic zone": "dynamic_zones"}  # item label → geometry key
NEW_ITEMS = ("new polygon zone", "new circle zone", "new line", "new dynamic zone")
SELECT_KEY, PENDING_KEY, DRAFT_KEY = "zones-item", "zones-select-next", "zones-draft"
KIND_LABELS = {"zones": "Zone", "dynamic_zones": "Dynamic zone", "lines": "Line"}


def _geometry(url: str, camera: str, camera_id: int) -> tuple[dict[str, list], str]:
    saved = queries.saved_geometry(url, camera)
    if saved is not None:
        geometry, ts, by = saved
        return geometry, f"saved here by {by} at {fmt_ts(ts)}"
    run = queries.latest_run(url, camera_id, camera)
    if run is not None:
        return run["geometry"], f"from the config of run {run['run_id']} (not edited here yet)"
    return {"zones": [], "dynamic_zones": [], "lines": []}, "none yet"


def _items(geometry: dict[str, list]) -> list[str]:
    return [f"{label}: {item['name']}" for label, key in KINDS.items() for item in geometry.get(key, [])]


def _find(geometry: dict[str, list], choice: str) -> tuple[str, int | None, dict[str, Any]]:
    """(geometry key, index or None for a new item, the item's current settings)."""
    if choice in NEW_ITEMS:
        key = {"new polygon zone": "zones", "new circle zone": "zones", "new line": "lines"}.get(choice, "dynamic_zones")
        return key, None, {"circle": [100.0, 100.0, 50.0]} if choice == "new circle zone" else {}
    label, name = choice.split(": ", 1)
    key = KINDS[label]
    index = next(i for i, item in enumerate(geometry[key]) if item["name"] == name)
    return key, index, geometry[key][index]


def _new_draft() -> None:
    """Leaving (or saving) a new item starts the next one from nothing: new drafts get new widget keys."""
    st.session_state[DRAFT_KEY] = st.session_state.get(DRAFT_KEY, 0) + 1


def _slot(camera: str, choice: str) -> str:
    """Where an item's widgets keep their state: per camera and item; per draft for a new item."""
    return f"{camera}|{choice}|{st.session_state.get(DRAFT_KEY, 0)}" if choice in NEW_ITEMS else f"{camera}|{choice}"


def refusal(error: GeometryError, key: str, index: int, name: str) -> str:
    """A refused save in plain words: the edited item's problems as they are, any other item's with its name."""
    lines = []
    for problem in error.problems:
        parts = problem.key.split(".")
        if parts[:2] == [key, str(index)] or parts[0] == "(geometry)":
            lines.append(problem.sentence)
        else:
            lines.append(f"{KIND_LABELS.get(parts[0], 'Item')} “{problem.item or problem.key}”: {problem.sentence}")
    return f"“{name or 'This item'}” was not saved. " + " ".join(dict.fromkeys(lines))


def _points(slot: str, initial: list) -> list[list[float]]:
    """The item's points as the table starts from them: the item's own, or as the last click on the frame left them."""
    return st.session_state.get(f"zones-points-{slot}", [[float(x), float(y)] for x, y in initial])


def _version(slot: str) -> int:
    return st.session_state.get(f"zones-version-{slot}", 0)


def _vertex_editor(slot: str, points: list[list[float]], fixed: bool) -> list[list[float]]:
    """The points as an editable table, as edited; a click on the frame starts a new table (new key) from them."""
    frame = pd.DataFrame(points, columns=["x", "y"], dtype=float)
    edited = st.data_editor(frame, num_rows="fixed" if fixed else "dynamic", key=f"zones-vertices-{slot}-{_version(slot)}",
                            column_config={"x": st.column_config.NumberColumn("x (px)", format="%.1f"),
                                           "y": st.column_config.NumberColumn("y (px)", format="%.1f")})  # fmt: skip
    points = [[float(x), float(y)] for x, y in edited.dropna().itertuples(index=False)]
    st.caption(f"{len(points)} points")
    return points


def _classes(slot: str, label: str, field: str, item: dict[str, Any], classes: list[str]) -> list[str]:
    current = item.get(field) or []
    return st.multiselect(label, sorted(set(classes) | set(current)), default=current, accept_new_options=True,
                          key=f"zones-{field}-{slot}")  # fmt: skip


def _membership(slot: str, item: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """Who a zone applies to and when an object counts as inside (analytics.zones' settings)."""
    chosen = _classes(slot, "Classes (none: every class)", "classes", item, classes)
    st.caption("When an object counts as inside")
    a, b = st.columns(2)  # two to a row: five inputs side by side squeeze their labels and values unreadable
    values = {
        "classes": chosen or None,
        "min_fraction": a.number_input("Min fraction of the object inside", 0.001, 1.0, float(item.get("min_fraction", 0.02)),
                                       0.01, format="%.3f", key=f"zones-fraction-{slot}",
                                       help="Share of the object's mask that must lie in the zone."),
        "min_pixels": b.number_input("…or min pixels inside", 1, None, int(item.get("min_pixels", 200)),
                                     key=f"zones-pixels-{slot}", help="Or at least this many of its pixels."),
    }  # fmt: skip
    c, d = st.columns(2)
    values |= {
        "enter_frames": c.number_input("Frames inside to enter", 1, None, int(item.get("enter_frames", 2)),
                                       key=f"zones-enter-{slot}"),
        "exit_frames": d.number_input("Frames outside to exit", 1, None, int(item.get("exit_frames", 3)),
                                      key=f"zones-exit-{slot}"),
    }  # fmt: skip
    e, _ = st.columns(2)
    dwell = e.number_input("Max dwell, seconds (0: off)", 0.0, None, float(item.get("max_dwell_s") or 0.0),
                           key=f"zones-dwell-{slot}")  # fmt: skip
    return values | {"max_dwell_s": dwell or None}


def _edit_item(slot: str, key: str, item: dict[str, Any], classes: list[str]) -> tuple[dict[str, Any], list | None]:
    """Widgets for one item: the item as edited, and its points as shown (None for a dynamic zone: nothing to click)."""
    edited: dict[str, Any] = {"name": st.text_input("Name", item.get("name", ""), key=f"zones-name-{slot}").strip()}
    if "color" in item:
        edited["color"] = item["color"]
    if key == "lines":
        st.caption("Ends A and B: looking from A to B, crossing right → left counts as in. Click the frame to set them.")
        points = _vertex_editor(slot, _points(slot, item.get("points", [])), fixed=len(item.get("points", [])) == 2)
        classes_chosen = _classes(slot, "Classes (none: every class)", "classes", item, classes)
        invert = st.checkbox("Invert in/out", bool(item.get("invert", False)), key=f"zones-invert-{slot}")
        return edited | {"points": points, "classes": classes_chosen or None, "invert": invert}, points
    if key == "dynamic_zones":
        shapes, units = ["circle", "dilate"], ["m", "cm", "mm", "px"]
        edited["anchor_classes"] = _classes(slot, "Anchor classes", "anchor_classes", item, classes)
        b, c, d = st.columns(3)
        edited |= {
            "shape": b.selectbox("Shape", shapes, shapes.index(item.get("shape", "circle")), key=f"zones-shape-{slot}"),
            "radius": c.number_input("Radius", 0.001, None, float(item.get("radius", 5.0)), key=f"zones-radius-{slot}"),
            "unit": d.selectbox("Unit", units, units.index(item.get("unit", "m")), key=f"zones-unit-{slot}"),
        }  # fmt: skip
        return edited | _membership(slot, item, classes), None
    if item.get("circle") is not None:
        (cx, cy), r = _points(slot, [item["circle"][:2]])[-1], item["circle"][2]
        st.caption("Click the frame to move the centre.")
        a, b, c = st.columns(3)
        v = _version(slot)
        centre = [a.number_input("Centre x", value=float(cx), key=f"zones-cx-{slot}-{v}"),
                  b.number_input("Centre y", value=float(cy), key=f"zones-cy-{slot}-{v}")]  # fmt: skip
        edited["circle"] = [*centre, c.number_input("Radius (px)", 0.5, None, float(r), key=f"zones-r-{slot}")]
        return edited | _membership(slot, item, classes), [centre]
    st.caption("Vertices in image pixels (at least 3). Click the frame to add one; edit or delete rows here.")
    points = _vertex_editor(slot, _points(slot, item.get("polygon", [])), fixed=False)
    return edited | {"polygon": points} | _membership(slot, item, classes), points


def _take_click(slot: str, click: dict, scale: float, points: list[list[float]], keep: int | None) -> None:
    """A new click (display → image pixels) extends the points (keeping the last ``keep``); each click counts once."""
    if st.session_state.get(f"zones-click-{slot}") == click.get("unix_time"):
        return
    st.session_state[f"zones-click-{slot}"] = click.get("unix_time")
    points = [*points, [round(click["x"] * scale, 1), round(click["y"] * scale, 1)]]
    st.session_state[f"zones-points-{slot}"] = points[-keep:] if keep else points
    st.session_state[f"zones-version-{slot}"] = _version(slot) + 1
    st.rerun()


def _save(settings: Settings, user: User, camera: str, geometry: dict[str, list], key: str, index: int | None,
          item: dict[str, Any] | None) -> bool:  # fmt: skip
    """Replace (or add, or with ``item`` None delete) one item and store the whole geometry; errors shown, not raised."""
    if not user.can_edit:
        st.error("Viewers cannot edit zones.")
        return False
    updated = {k: list(geometry.get(k, [])) for k in KINDS.values()}
    if item is None:
        updated[key].pop(index)
    elif index is None:
        updated[key].append(item)
    else:
        updated[key][index] = item
    try:
        save_geometry(settings.store_url, camera, updated["zones"], updated["dynamic_zones"], updated["lines"], user.name)
    except GeometryError as exc:
        where = len(updated[key]) - 1 if index is None else index
        st.error(refusal(exc, key, where, item["name"]) if item is not None else f"Not deleted: {exc}")
        return False
    queries.clear_caches(queries.latest_run)
    label = next(lbl for lbl, k in KINDS.items() if k == key)
    st.session_state[PENDING_KEY] = f"{label}: {item['name']}" if item is not None else None
    return True


def render() -> None:
    settings, user = context()
    url = settings.store_url
    st.title("Zones")
    names, ids = pick_cameras(url, "zones-camera", allow_all=False)
    if not ids:
        st.info("The store has no cameras yet: zones are edited per camera once it has run.")
        return
    camera, camera_id = names[0], ids[0]
    geometry, origin = _geometry(url, camera, camera_id)
    run = queries.latest_run(url, camera_id, camera)
    background, where = camera_background(settings.live_dir, camera, run["source"] if run else None)
    st.caption(f"Geometry: {origin}. Background: {where}.")
    if (message := st.session_state.pop("zones-message", None)) is not None:
        st.success(message)

    if not user.can_edit:
        st.info("Signed in as a viewer: zones can be looked at, not edited.")
        st.image(cv2.cvtColor(draw_geometry(background, geometry), cv2.COLOR_BGR2RGB), width="stretch")
        st.json(geometry, expanded=False)
        return

    options = [*_items(geometry), *NEW_ITEMS]
    if PENDING_KEY in st.session_state:  # select what was just saved (or the first item after a delete)
        pending = st.session_state.pop(PENDING_KEY)
        st.session_state[SELECT_KEY] = pending if pending in options else options[0]
    choice = st.selectbox("Edit", options, key=SELECT_KEY, on_change=_new_draft)
    key, index, item = _find(geometry, choice)
    slot = _slot(camera, choice)
    form, preview = st.columns([1, 1])
    with form:
        edited, points = _edit_item(slot, key, item, queries.known_classes(url))
        save, delete = st.columns(2)
        saved = save.button("Save", type="primary", key="zones-save")
        deleted = index is not None and delete.button("Delete", key="zones-delete")
        if saved and _save(settings, user, camera, geometry, key, index, edited):
            st.session_state["zones-message"] = f"Saved {edited['name']!r} for {camera}."
            st.session_state.pop(f"zones-points-{slot}", None)  # the table starts afresh from what was saved
            st.session_state[f"zones-version-{slot}"] = _version(slot) + 1
            _new_draft()
            st.rerun()
        if deleted and _save(settings, user, camera, geometry, key, index, None):
            st.session_state["zones-message"] = f"Deleted {item['name']!r} from {camera}."
            st.rerun()
    with preview:
        others = {k: [g for i, g in enumerate(geometry.get(k, [])) if not (k == key and i == index)] for k in KINDS.values()}
        try:
            image = draw_geometry(background, {**others, key: [*others[key], edited]}, highlight=edited["name"])
        except (KeyError, TypeError, ValueError):  # a half-drawn item (a line with one end so far): draw the rest
            image = draw_geometry(background, others)
        if points is not None:
            draw_points(image, points)
        click = streamlit_image_coordinates(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), width="stretch", image_format="JPEG",
                                            key=f"zones-canvas-{slot}", cursor="crosshair")  # fmt: skip
        if points is not None and click and click.get("width"):
            keep = 2 if key == "lines" else 1 if "circle" in edited else None
            _take_click(slot, click, background.shape[1] / click["width"], points, keep)
        if key == "dynamic_zones":
            st.caption("Dynamic zones move with their anchor objects, so they have no fixed place on the frame.")


if __name__ == "__main__":
    render()
