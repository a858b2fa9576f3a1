"""Chart pieces the Counts, Sizes and Track explorer pages share: readable numbers and site-time table columns."""

from __future__ import annotations

import math

import pandas as pd

from dashboard.clock import Clock

NUMBER = ",.3~r"  # d3 format: 3 significant digits, no trailing zeros, no exponent (1,230 · 12.5 · 0.0123)


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
