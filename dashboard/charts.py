"""Chart pieces the Counts, Sizes and Track explorer pages share: site-time axes and readable numbers."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from dashboard.clock import Clock

NUMBER = ",.3~r"  # d3 format: 3 significant digits, no trailing zeros, no exponent (1,230 · 12.5 · 0.0123)


def time_x(clock: Clock, span_s: float, title: str = "time") -> alt.X:
    """``clock.x`` (site wall clock on a UTC scale, zone in the title), labelled by an explicit ``utcFormat``.

    Streamlit's chart frontend ignores an axis ``format`` given with ``formatType: "utc"`` and falls back to
    Vega's default labels (``09:05`` for 21:05 and ``10 PM``: a 12-hour clock without AM/PM), so the labels
    come from a ``labelExpr`` instead. Ticks are at least a second apart: a window of a few seconds would
    otherwise get ticks every 0.1–0.5 s that all read the same second (or ``.500 .500 .500``).
    """
    spec = clock.x(span_s, title=title).to_dict()
    axis = {k: v for k, v in spec.get("axis", {}).items() if k not in ("format", "formatType")}
    pattern = clock.time_format(span_s)
    axis |= {"labelExpr": f"utcFormat(datum.value, '{pattern}')", "tickMinStep": 1000, "labelOverlap": True}
    return alt.X(**{**spec, "axis": axis})


TIME_TEXT = "time_text"  # the column of site times as text, for tooltips


def with_time_text(frame: pd.DataFrame, clock: Clock, column: str = "time") -> pd.DataFrame:
    """``frame`` with :data:`TIME_TEXT`: ``column`` (UTC datetimes) as site wall-clock text, for :func:`time_tooltip`.

    Tooltips get text, not a formatted time: a ``format`` with ``formatType: "utc"`` is ignored by the
    frontend (see :func:`time_x`), and without it the browser would show its own zone.
    """
    return frame.assign(**{TIME_TEXT: [clock.fmt(t.timestamp()) if pd.notna(t) else "—" for t in frame[column]]})


def time_tooltip(clock: Clock, title: str = "time") -> alt.Tooltip:
    return alt.Tooltip(f"{TIME_TEXT}:N", title=f"{title} ({clock.label})")


def significant(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded to ``digits`` significant digits (None and NaN stay as they are)."""
    if value is None or pd.isna(value) or value == 0 or not math.isfinite(value):
        return value
    return round(float(value), digits - 1 - math.floor(math.log10(abs(value))))


def site_times(frame: pd.DataFrame, clock: Clock, *columns: str) -> pd.DataFrame:
    """Table columns of UTC datetimes as site wall-clock text, each renamed to name the zone (``time (Europe/Berlin)``)."""
    out = frame.copy()
    for column in columns:
        if column in out:
            text = out[column].map(lambda t: clock.fmt(t.timestamp()) if pd.notna(t) else "—")
            out[column] = text
            out = out.rename(columns={column: f"{column} ({clock.label})"})
    return out
